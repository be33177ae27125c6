"""Videos and animated images: frames decoded, upscaled and encoded as a stream.

- :func:`upscale_frames`: any iterable of frames -> an iterator of upscaled frames,
  in order, lazily (bring your own decoder). Whole frames that fit in memory together
  go through the model as one batch (:func:`batch_size_for`); larger ones are tiled
  one frame at a time, exactly as :meth:`Upscaler.upscale_hwc` does for images.
- :func:`upscale_video`: a video file -> a video file through PyAV (the ``video``
  extra): memory is a few frames whatever the length. The encoded video goes to
  segment files in a work folder beside the output (``.<name>.attnsr-parts/``), so an
  interrupted job continues from its last completed segment (``resume=True``); the
  output is written under a temporary name and renamed at the end (never a partial
  file under the final name). What is kept of the input: :mod:`attnsr.data.video_io`.
- :func:`upscale_animated`: animated GIF/APNG/WebP and multi-page TIFF, through Pillow
  (:mod:`attnsr.data.animated`).
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attnsr.data import animated
from attnsr.data.io import resolve_max_pixels
from attnsr.data.media import MediaOptions
from attnsr.errors import ImageWriteError
from attnsr.fs import atomic_write, atomic_write_bytes
from attnsr.inference.tiling import ProgressCb
from attnsr.inference.upscale import Upscaler

if TYPE_CHECKING:
    from attnsr.data.video_io import EncoderSpec, VideoInfo

log = logging.getLogger(__name__)

MAX_BATCH = 8  # frames per model call at most off the CPU (more buys nothing measurable)
SEGMENT_SECONDS = 10.0  # video time per segment: what an interruption can lose
_MANIFEST = "job.json"


@dataclass(frozen=True)
class MediaResult:
    """A written video or animation: its path, frame count and output megapixels (all
    frames)."""

    path: Path
    frames: int
    megapixels: float


# --------------------------------------------------------------------------- frames
def batch_size_for(up: Upscaler, height: int, width: int, requested: int | None = None
                   ) -> int:
    """How many ``height x width`` RGB frames go through the model at once: the most
    (up to ``requested``; None: :data:`MAX_BATCH` on a GPU, 1 on the CPU, where
    batching measured no faster, ``benchmarks/video_speed.py``) whose stacked size
    still runs as one tile (``tile="auto"``: within the memory budget; ``tile=N``:
    within ``N*N`` pixels; ``tile=0``: always). 1 when a frame itself needs tiling or
    the model does not map RGB to RGB."""
    if requested is None:
        requested = 1 if up.device.type == "cpu" else MAX_BATCH
    cap = max(1, requested)
    if up.runner.in_channels != 3 or up.runner.out_channels != 3:
        return 1
    if up.tile == "auto":
        return next((b for b in range(cap, 1, -1) if up.tile_size(height * b, width) == 0), 1)
    tile = int(up.tile)
    if tile == 0:
        return cap
    return max(1, min(cap, tile * tile // (height * width))) if tile >= max(height, width) else 1


def _as_frame(frame: Any) -> np.ndarray:
    arr = np.asarray(frame)
    arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.dtype.kind not in "uf":
        raise ValueError(f"expected (H, W[, 1-4]) uint8/uint16/float frames, got "
                         f"{arr.dtype} {arr.shape}")
    return arr


def _maxval(dtype: Any) -> float:
    return float(np.iinfo(dtype).max) if np.dtype(dtype).kind == "u" else 1.0


def _single(up: Upscaler, arr: np.ndarray) -> np.ndarray:
    """One frame through the image path (:meth:`Upscaler.__call__` on an array: tiled if
    needed, alpha and gray as for images, same dtype back)."""
    return up(arr)


def _batch(up: Upscaler, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Same-shape RGB frames through the runner in one call; rounded as the tiled path
    rounds (``round(clamp(x) * max)``)."""
    maxval = _maxval(frames[0].dtype)
    with up.runner.host_threads(), torch.inference_mode():
        lr = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(maxval)
        sr = up.runner(lr).cpu()  # B,3,sH,sW in [0, 1]
        if frames[0].dtype.kind == "u":
            sr = sr.mul_(maxval).round_()
        out = sr.permute(0, 2, 3, 1).numpy()  # B,sH,sW,3
    dtype = frames[0].dtype if frames[0].dtype.kind == "u" else np.float32
    return [out[i].astype(dtype) for i in range(len(frames))]


def _run(up: Upscaler, frames: list[np.ndarray]) -> list[np.ndarray]:
    if len(frames) > 1:
        return _batch(up, frames)
    return [_single(up, f) for f in frames]


def upscale_frames(
    frames: Iterable[Any], *, model: Any = None, scale: int | None = None,
    upscaler: Upscaler | None = None, batch_size: int | None = None, **options: Any,
) -> Iterator[np.ndarray]:
    """Upscale a stream of frames lazily, in order.

    Args:
        frames: ``(H, W[, C])`` arrays, C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA;
            uint8, uint16 or float in [0, 1].
        model, scale, options: as for :class:`~attnsr.inference.upscale.Upscaler`
            (``tile``, ``device``, ``precision``, ``denoise`` ...); or ``upscaler``.
        batch_size: frames per model call at most (None: 1 on the CPU,
            :data:`MAX_BATCH` on a GPU); whole RGB frames are batched only while they
            fit in memory (:func:`batch_size_for`).

    Yields:
        ``(sH, sW, C)`` arrays of the input's dtype (float in -> float32), each equal
        to what :meth:`Upscaler.upscale_hwc` gives for that frame alone (batching
        changes float rounding only: at most 1 level after quantisation).

    Memory: one batch of input and output frames.

    >>> for sr in upscale_frames(my_decoder(), model="attnsr-x2"):
    ...     my_encoder.write(sr)
    """
    up = upscaler if upscaler is not None else Upscaler(model, scale=scale, **options)
    pending: list[np.ndarray] = []
    limit = 1
    for frame in frames:
        arr = _as_frame(frame)
        if pending and (arr.shape != pending[0].shape or arr.dtype != pending[0].dtype):
            yield from _run(up, pending)
            pending = []
        if not pending:
            limit = batch_size_for(up, *arr.shape[:2], batch_size) if arr.shape[2] == 3 else 1
        pending.append(arr)
        if len(pending) >= limit:
            yield from _run(up, pending)
            pending = []
    yield from _run(up, pending)


# --------------------------------------------------------------------------- job folder
class _Parts:
    """The work folder of one video job: segment files and ``job.json`` (the job's
    fingerprint and its completed segments, rewritten atomically after each one)."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.folder, self.fingerprint = folder, fingerprint
        self.segments: list[dict[str, Any]] = []

    @classmethod
    def open(cls, dst: Path, fingerprint: dict[str, Any], resume: bool) -> _Parts:
        parts = cls(work_folder(dst), json.loads(json.dumps(fingerprint)))
        old = parts._load()
        if resume and old is not None and old.get("fingerprint") == parts.fingerprint:
            parts.segments = old["segments"]
            log.info("%s: resuming after %d frames (%d segments)", dst, parts.done,
                     len(parts.segments))
            return parts
        if parts.folder.exists():
            why = "its settings or source differ" if resume else "use --resume to continue it"
            log.warning("%s: starting over, not from the interrupted job's parts (%s)", dst,
                        why)
            shutil.rmtree(parts.folder)
        parts.folder.mkdir(parents=True)
        parts._save()
        return parts

    def _load(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        files_ok = all((self.folder / s["file"]).is_file() for s in data.get("segments", []))
        return data if files_ok else None

    def _save(self) -> None:
        state = {"fingerprint": self.fingerprint, "segments": self.segments}
        atomic_write_bytes(self.folder / _MANIFEST, json.dumps(state, indent=1).encode())

    @property
    def done(self) -> int:
        return sum(s["frames"] for s in self.segments)

    def next_path(self) -> Path:
        return self.folder / f"seg-{len(self.segments):05d}.bin"

    def add(self, path: Path, frames: int, extradata: bytes) -> None:
        self.segments.append({"file": path.name, "frames": frames, "extradata": extradata.hex()})
        self._save()

    def paths(self) -> list[Path]:
        return [self.folder / s["file"] for s in self.segments]

    def extradata(self, dst: Path) -> bytes:
        headers = {s["extradata"] for s in self.segments}
        if len(headers) > 1:
            raise ImageWriteError(dst, "the encoder wrote different codec headers in "
                                       "different segments; cannot join them")
        return bytes.fromhex(headers.pop()) if headers else b""

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def work_folder(dst: str | Path) -> Path:
    """Where a video job keeps its segments until the output is written."""
    dst = Path(dst)
    return dst.parent / f".{dst.name}.attnsr-parts"


def _fingerprint(src: Path, up: Upscaler, spec: EncoderSpec, segment_frames: int
                 ) -> dict[str, Any]:
    """What must be equal for segments of an interrupted job to be reused."""
    st = src.stat()
    return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "model": up.runner.name, "model_source": str(getattr(up.runner, "source", "")),
            "scale": up.scale, "precision": str(up.precision), "encoder": spec.as_dict(),
            "segment_frames": segment_frames}


# --------------------------------------------------------------------------- videos
_END, _ABORT = object(), object()  # what closes the encoder thread's queue
ENCODE_QUEUE = 4  # upscaled frames waiting for the encoder at most


class _Encoder:
    """Colour conversion and encoding on a thread of their own, fed through a bounded
    queue, so the model and the encoder run at the same time (PyAV and torch release
    the GIL). Frames are encoded in the order given; a segment is recorded in ``parts``
    when it holds ``segment_frames`` frames, and the last one at :meth:`close`."""

    def __init__(self, parts: _Parts, spec: EncoderSpec, segment_frames: int) -> None:
        self.parts, self.spec, self.segment_frames = parts, spec, segment_frames
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=ENCODE_QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="attnsr-encode", daemon=True)
        self.thread.start()

    def put(self, sr: np.ndarray, pts: int, duration: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((sr, pts, duration))

    def close(self, complete: bool) -> None:
        """Encode what is queued; then record the last, partial segment (``complete``)
        or drop it (an interruption or an error upstream). Re-raises the thread's error
        when ``complete``."""
        self.queue.put(_END if complete else _ABORT)
        self.thread.join()
        if complete and self.error is not None:
            raise self.error

    def _work(self) -> None:
        from attnsr.data import video_io

        writer: video_io.SegmentWriter | None = None
        try:
            while (item := self.queue.get()) is not _END and item is not _ABORT:
                sr, pts, duration = item
                writer = writer or video_io.SegmentWriter(self.parts.next_path(), self.spec)
                writer.add(video_io.to_video_frame(sr, self.spec, pts, duration))
                if writer.frames == self.segment_frames:
                    self._record(writer)
                    writer = None
            if item is _END and writer is not None:
                self._record(writer)
                writer = None
        except BaseException as exc:  # handed to the producer
            self.error = exc
            while self.queue.get() not in (_END, _ABORT):
                pass  # keep the producer from blocking on a full queue
        finally:
            if writer is not None:
                writer.abort()

    def _record(self, writer: Any) -> None:
        self.parts.add(writer.path, writer.frames, writer.finish())


def _encode_segments(parts: _Parts, src: Path, info: VideoInfo, spec: EncoderSpec,
                     up: Upscaler, segment_frames: int, batch_size: int | None,
                     progress_cb: ProgressCb | None) -> None:
    """Decode from the first frame not yet in a segment, upscale, encode (on the
    encoder thread); ``progress_cb`` counts frames handed to the encoder."""
    from attnsr.data import video_io

    times: deque[tuple[int, int]] = deque()  # (pts, duration) of frames in flight

    def pixels() -> Iterator[np.ndarray]:
        for frame in video_io.decode(src, info, start=parts.done):
            times.append((frame.pts, frame.duration))
            yield frame.pixels

    encoder = _Encoder(parts, spec, segment_frames)
    done, complete = parts.done, False
    try:
        for sr in upscale_frames(pixels(), upscaler=up, batch_size=batch_size):
            encoder.put(sr, *times.popleft())
            done += 1
            if progress_cb is not None:
                progress_cb(done, max(info.frames, done))
        complete = True
    finally:
        encoder.close(complete)


def upscale_video(
    src: str | Path, dst: str | Path, *, model: Any = None, scale: int | None = None,
    upscaler: Upscaler | None = None, codec: str | None = None, crf: int | None = None,
    pix_fmt: str | None = None, resume: bool = False, batch_size: int | None = None,
    segment_seconds: float | None = None, software: str | None = None,
    max_pixels: int | None = None, progress_cb: ProgressCb | None = None, **options: Any,
) -> MediaResult:
    """Upscale the video ``src`` into ``dst`` (its container from the extension).

    Args:
        model, scale, options: as for :class:`~attnsr.inference.upscale.Upscaler`; or
            ``upscaler``.
        codec, crf, pix_fmt: encoder settings (:class:`~attnsr.data.media.MediaOptions`:
            default H.264 CRF 18 where the container holds it, the input's pixel format
            or the closest one the codec has).
        resume: continue an interrupted job from its last completed segment (same
            source, model and encoder settings; otherwise it starts over).
        batch_size: frames per model call at most (see :func:`upscale_frames`).
        segment_seconds: video time per segment, what an interruption can lose (None:
            :data:`SEGMENT_SECONDS`).
        software: the marker stored in the output's ``comment`` tag.
        max_pixels: refuse larger frames (None: the image default; <= 0: no limit).
        progress_cb: called ``(frames done, frames expected)`` after each frame.

    Ctrl-C (``KeyboardInterrupt``) leaves no output and keeps the work folder for
    ``resume``; any other failure removes both.

    >>> attnsr.upscale_video("clip.mp4", "clip_x2.mp4", model="attnsr-x2")
    """
    from attnsr.data import video_io

    src, dst = Path(src), Path(dst)
    up = upscaler if upscaler is not None else Upscaler(model, scale=scale, **options)
    info = video_io.probe(src, max_pixels=resolve_max_pixels(max_pixels))
    spec = video_io.choose_encoder(info, video_io.container_format(dst),
                                   MediaOptions(codec=codec, crf=crf, pix_fmt=pix_fmt), up.scale)
    seconds = SEGMENT_SECONDS if segment_seconds is None else segment_seconds
    seg = max(1, round(seconds * float(info.rate))) if info.rate else 250
    parts = _Parts.open(dst, _fingerprint(src, up, spec, seg), resume)
    try:
        _encode_segments(parts, src, info, spec, up, seg, batch_size, progress_cb)
        plan = video_io.MuxPlan(source=src, segments=parts.paths(), spec=spec, info=info,
                                extradata=parts.extradata(dst), marker=software)
        with atomic_write(dst) as tmp:
            video_io.mux(plan, dst, tmp)
    except KeyboardInterrupt:
        raise  # the parts stay for resume
    except video_io.av.FFmpegError as exc:
        parts.remove()
        raise ImageWriteError(dst, f"encoding failed: {video_io.describe(exc)}") from None
    except BaseException:
        parts.remove()
        raise
    parts.remove()
    return MediaResult(dst, parts.done, parts.done * spec.width * spec.height / 1e6)


# --------------------------------------------------------------------------- animations
def upscale_animated(
    src: str | Path, dst: str | Path, *, model: Any = None, scale: int | None = None,
    upscaler: Upscaler | None = None, batch_size: int | None = None, quality: int = 95,
    software: str | None = None, max_pixels: int | None = None,
    progress_cb: ProgressCb | None = None, **options: Any,
) -> MediaResult:
    """Upscale an animated GIF/APNG/WebP or a multi-page TIFF into ``dst`` (format from
    the extension): every frame, with its duration, the loop count and transparency
    (see :mod:`attnsr.data.animated`). Written atomically."""
    src, dst = Path(src), Path(dst)
    up = upscaler if upscaler is not None else Upscaler(model, scale=scale, **options)
    info = animated.probe(src, max_pixels=max_pixels)
    written = {"frames": 0, "mp": 0.0}

    def frames() -> Iterator[np.ndarray]:
        lr = animated.read_frames(src, info)
        for sr in upscale_frames(lr, upscaler=up, batch_size=batch_size):
            written["frames"] += 1
            written["mp"] += sr.shape[0] * sr.shape[1] / 1e6
            if progress_cb is not None:
                progress_cb(int(written["frames"]), info.n_frames)
            yield sr

    animated.write_animated(dst, frames(), info, quality=quality, software=software)
    return MediaResult(dst, int(written["frames"]), float(written["mp"]))


__all__ = ["MediaOptions", "MediaResult", "batch_size_for", "upscale_animated",
           "upscale_frames", "upscale_video", "work_folder"]
