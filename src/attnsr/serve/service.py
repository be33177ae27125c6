"""What the server does, without HTTP: accept an upload as a job (sniff it, validate the
options, warm the model, queue it), run a job (read, upscale with tile progress, write),
describe a job as JSON. :mod:`attnsr.serve.app` maps HTTP onto this.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnsr import __version__
from attnsr.data.io import read_image, resolve_max_pixels
from attnsr.serve.catalogue import ModelPool, choose
from attnsr.serve.config import OUTPUT_FORMATS, ServeConfig
from attnsr.serve.errors import ApiError, from_exception
from attnsr.serve.jobs import DONE, Job, JobQueue
from attnsr.serve.sniff import sniff

EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
               ".tif": "image/tiff", ".bmp": "image/bmp"}
MODES = ("auto", "sync", "async")
_UNSAFE = re.compile(r"[^\w.\- ]+")


@dataclass(frozen=True, kw_only=True)
class Options:
    """What a client may choose besides the image (form fields of ``POST /v1/upscale``)."""

    model: str | None = None
    scale: int | None = None
    denoise: float | None = None
    format: str = "same"
    quality: int = 95
    mode: str = "auto"


def safe_stem(filename: str) -> str:
    """The client's file name reduced to a harmless stem for the result's name: no
    folders, no odd characters (a name is only ever a label here, never a path)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _UNSAFE.sub("_", stem).strip(" ._")
    return stem[:80] or "image"


class Service:
    """Jobs, the warm models and the private folder for uploads and results."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.max_pixels = resolve_max_pixels(config.max_pixels)
        self.work_dir = Path(tempfile.mkdtemp(prefix="attnsr-serve-", dir=config.work_dir))
        self.pool = ModelPool(tile=config.tile, device=config.device,
                              max_models=config.max_models)
        self.queue = JobQueue(lambda job: self.process(job), workers=config.workers,
                              queue_size=config.queue_size, ttl_s=config.result_ttl_s)

    def upload_path(self) -> tuple[str, Path]:
        """A new job id and the private path its upload is written to."""
        job_id = secrets.token_urlsafe(16)
        return job_id, self.work_dir / f"{job_id}.upload"

    # ------------------------------------------------------------------ accepting
    def accept(self, job_id: str, upload: Path, filename: str, opts: Options) -> Job:
        """Turn a stored upload into a queued :class:`Job` (blocking: run it off the event
        loop). Raises :class:`ApiError` (400/413/415/422/429/503); the upload is deleted
        on failure."""
        try:
            if opts.mode not in MODES:
                raise ApiError(422, "invalid_option", f"mode {opts.mode!r}: use "
                               f"{', '.join(MODES)}")
            if opts.format not in OUTPUT_FORMATS:
                raise ApiError(422, "invalid_option", f"format {opts.format!r}: use "
                               f"{', '.join(OUTPUT_FORMATS)}")
            info = sniff(upload, filename, self.max_pixels)
            choice = choose(opts.model, opts.scale, opts.denoise)
            try:
                self.pool.get(choice)  # loads (and validates denoise) before queueing
            except Exception as exc:
                raise from_exception(exc, "model") from exc
            ext = info.extension if opts.format == "same" else EXTENSIONS[opts.format]
            job = Job(id=job_id, filename=filename, info=info, choice=choice, out_ext=ext,
                      quality=opts.quality, input_path=upload, created=time.monotonic(),
                      result_name=f"{safe_stem(filename)}_x{choice.scale}{ext}",
                      media_type=MEDIA_TYPES[ext])
            self.queue.submit(job)
            return job
        except BaseException:
            upload.unlink(missing_ok=True)
            raise

    def is_sync(self, job: Job, mode: str) -> bool:
        """Whether the request waits for the image (``auto``: small inputs only)."""
        return mode == "sync" or (mode == "auto" and
                                  job.info.pixels <= self.config.sync_max_pixels)

    # ------------------------------------------------------------------ running
    def process(self, job: Job) -> None:
        """Read, upscale (reporting tiles), write the result next to the upload."""
        img = read_image(job.input_path, max_pixels=self.max_pixels)
        up = self.pool.get(job.choice)
        dst = self.work_dir / f"{job.id}.result{job.out_ext}"
        up.write_upscaled(img, dst, quality=job.quality, progress_cb=job.progress,
                          software=f"attnsr {__version__} ({up.runner.name}, x{up.scale})")
        job.result_path = dst  # PNG/TIFF streamed: the output is never held whole
        job.output_size = (img.width * up.scale, img.height * up.scale)

    def describe(self, job: Job) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: status, progress, ETA, where the result is."""
        now = time.monotonic()
        total = max(job.tiles_total, 1)
        body: dict[str, Any] = {
            "id": job.id, "status": job.status, "filename": job.filename,
            "model": job.choice.name, "scale": job.choice.scale, "denoise": job.choice.denoise,
            "input": {"format": job.info.format, "width": job.info.width,
                      "height": job.info.height},
            "progress": {"tiles_done": job.tiles_done, "tiles_total": job.tiles_total,
                         "fraction": 1.0 if job.status == DONE else
                         round(job.tiles_done / total, 4)},
            "queue_position": self.queue.position(job), "eta_s": job.eta_s(now),
            "result_url": None, "result_filename": job.result_name, "error": None,
        }
        if job.status == DONE and job.output_size is not None:
            body["output"] = {"width": job.output_size[0], "height": job.output_size[1],
                              "media_type": job.media_type}
            body["result_url"] = f"/v1/jobs/{job.id}/result"
            body["expires_in_s"] = round(max(0.0, (job.finished or now) +
                                             self.config.result_ttl_s - now), 1)
        if job.problem is not None:
            body["error"] = job.problem.body()["error"]
        return body

    def close(self) -> None:
        self.queue.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)

