"""``attnsr.batch``: the upscale job of ``attnsr upscale`` on a Ray cluster.

:func:`upscale_dataset` is a Ray Data pipeline: the inputs are listed and named on the
driver exactly as the local command names them (:mod:`attnsr.inference.jobs`), outputs
that already exist are skipped there, and the rest stream through a pool of actors. Each
actor loads the model once (:class:`~attnsr.inference.upscale.Upscaler`, through
:func:`attnsr.resolve`) and runs the local command's own per-file function
(:func:`~attnsr.inference.upscale.upscale_path`: read, decode, tiled upscale, encode,
atomic write), so outputs, names, metadata and the handling of bad files are those of
one machine, byte for byte.

Storage: local or shared paths, and fsspec URLs (``s3://``, ``gs://`` ... when the
matching package is installed). An input URL is copied to a local temporary file first
(the decoder needs a file: 16-bit PNGs are read twice); an output is written locally and
then uploaded under a temporary name and renamed, or, on object stores, where one PUT is
all-or-nothing, uploaded in one request. A retried task therefore never leaves half a
file at an output name.

Fault tolerance: Ray restarts a dead actor and retries its tasks (Ray Data's defaults for
actor pools); a re-run skips the outputs that exist (they are complete: every write is
atomic). Every input is recorded in a JSONL manifest (:class:`FileResult`).

Ray is an optional extra: ``pip install 'attnsr[ray]'``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from attnsr.data.media import MediaOptions
from attnsr.errors import AttnsrError, ConfigError
from attnsr.fs import atomic_write
from attnsr.inference.jobs import (
    INPUT_EXTENSIONS,
    Job,
    drop_own_outputs,
    expand_inputs,
    glob_base,
    output_path,
    single_output,
    why_skip,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'attnsr[ray]'"
MANIFEST_NAME = "attnsr-manifest.jsonl"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = set("*?[")
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
_FILE_ERRORS = (AttnsrError, OSError, RuntimeError, MemoryError)  # as the local command


@dataclass(frozen=True, kw_only=True)
class UpscaleSpec:
    """What every worker needs: the :class:`~attnsr.inference.upscale.Upscaler`
    arguments and the per-file write settings of ``attnsr upscale``."""

    model: str | None = None
    scale: int | None = None
    tile: int | str = "auto"
    overlap: int | None = None
    device: str = "auto"
    precision: str = "auto"
    alpha_mode: str = "model"
    backend: str = "auto"
    denoise: float | None = None
    tta: bool = False
    fast: bool = False
    quality: int = 95
    max_pixels: int | None = None
    media: MediaOptions = field(default_factory=MediaOptions)
    threads: int | None = None  # torch CPU threads per worker; None: its CPUs

    def upscaler_args(self) -> dict[str, Any]:
        return dict(scale=self.scale, tile=self.tile, overlap=self.overlap, device=self.device,
                    precision=self.precision, alpha_mode=self.alpha_mode,
                    backend=self.backend, denoise=self.denoise, tta=self.tta,
                    fast=self.fast)


@dataclass(frozen=True)
class Task:
    """One file to upscale: ``src`` into ``dst`` (local paths or fsspec URLs)."""

    src: str
    dst: str


@dataclass(frozen=True, kw_only=True)
class FileResult:
    """One manifest line. ``status``: ``done``, ``skipped`` (output exists, or the file
    is an attnsr output) or ``failed`` (``error`` says why, one line naming the file).
    ``input_bytes``/``output_bytes``: file sizes (0 when unknown); ``megapixels``:
    written (all frames); ``seconds``: on the worker; ``worker``: host:pid."""

    input: str
    output: str = ""
    status: str = "done"
    input_bytes: int = 0
    output_bytes: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0
    error: str = ""
    worker: str = ""


@dataclass
class BatchReport:
    """The outcome of :func:`upscale_dataset`: one result per input, sorted by input."""

    results: list[FileResult]
    seconds: float
    manifest: Path | None
    model: str
    scale: int

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def megapixels(self) -> float:
        return sum(r.megapixels for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]


ProgressFn = Callable[[FileResult, int, int], None]  # (result, finished, to run)


# --------------------------------------------------------------------------- storage
def is_url(path: str | os.PathLike[str]) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: anything fsspec opens by protocol."""
    return bool(_URL.match(str(path)))


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # no s3fs / gcsfs, unknown protocol
        raise ConfigError(f"{url}: {exc}") from None


@contextlib.contextmanager
def _local_input(src: str) -> Iterator[Path]:
    """``src`` as a local file: itself, or a URL copied into a temporary folder."""
    if not is_url(src):
        yield Path(src)
        return
    fs, path = _fs(src)
    with tempfile.TemporaryDirectory(prefix="attnsr-in-") as tmp:
        local = Path(tmp) / PurePosixPath(path).name
        fs.get_file(path, str(local))
        yield local


@contextlib.contextmanager
def _local_output(dst: str) -> Iterator[Path]:
    """Where to write ``dst`` locally; a URL is uploaded when the block succeeds: under a
    temporary name then renamed, or (object stores: one PUT is atomic) in one request."""
    if not is_url(dst):
        yield Path(dst)
        return
    fs, path = _fs(dst)
    with tempfile.TemporaryDirectory(prefix="attnsr-out-") as tmp:
        local = Path(tmp) / PurePosixPath(path).name
        yield local
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & _OBJECT_STORES:
            fs.put_file(str(local), path)
            return
        parent = str(PurePosixPath(path).parent)
        fs.makedirs(parent, exist_ok=True)
        part = f"{parent}/.{PurePosixPath(path).name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fs.put_file(str(local), part)
            fs.mv(part, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(part)
            raise


def _size(path: str) -> int:
    try:
        if is_url(path):
            fs, p = _fs(path)
            return int(fs.size(p) or 0)
        return Path(path).stat().st_size
    except (OSError, AttnsrError):
        return 0


def _exists(path: str) -> bool:
    if is_url(path):
        fs, p = _fs(path)
        return bool(fs.exists(p))
    return Path(path).exists()


# --------------------------------------------------------------------------- planning
def _url_jobs(item: str, recursive: bool) -> list[Job]:
    """fsspec listing of a URL (file, folder or glob) as jobs on its stripped path."""
    fs, path = _fs(item)
    if _GLOB_CHARS & set(path):
        found, base = fs.glob(path), glob_base(path)
    elif fs.isdir(path):
        found = fs.find(path) if recursive else fs.ls(path, detail=False)
        base = PurePosixPath(path)
    elif fs.exists(path):
        return [Job(Path(path))]
    else:
        return []
    return [Job(Path(f), Path(base)) for f in sorted(found)
            if PurePosixPath(f).suffix.lower() in INPUT_EXTENSIONS and fs.isfile(f)]


def _named_like_output(job: Job, stems: set[tuple[Path, str]], suffix: str) -> bool:
    """A folder/glob match ``a_x4.png`` next to an ``a.*`` input: an earlier output (the
    local command also reads the file's marker; a URL is not opened to plan)."""
    stem = job.src.stem
    return (job.base is not None and bool(suffix) and stem.endswith(suffix) and stem != suffix
            and (job.src.parent, stem[: -len(suffix)]) in stems)


def _plan_urls(inputs: Sequence[str], output: str | None, *, recursive: bool, suffix: str,
               fmt: str) -> tuple[list[Task], list[str]]:
    """Tasks for URL inputs (named as the local command names files; the protocol of
    each input, or of ``output``, is put back); plus the inputs that matched nothing."""
    tasks, missing = [], []
    out_fs = _fs(output) if output is not None else None
    out_path = Path(out_fs[1]) if out_fs else None
    for item in inputs:
        fs, _ = _fs(item)
        jobs = [j for j in _url_jobs(item, recursive)
                if out_path is None or j.base is None or not j.src.is_relative_to(out_path)]
        stems = {(j.src.parent, j.src.stem) for j in jobs}
        jobs = [j for j in jobs if not _named_like_output(j, stems, suffix)]
        if not jobs:
            missing.append(item)
        single = len(inputs) == 1 and len(jobs) == 1 and jobs[0].base is None
        for job in jobs:
            dst = output_path(job, out_path, single=single, suffix=suffix, fmt=fmt)
            dst_fs = out_fs[0] if out_fs else fs
            tasks.append(Task(fs.unstrip_protocol(str(job.src)),
                              dst_fs.unstrip_protocol(str(dst))))
    return tasks, missing


def plan(inputs: Sequence[str], output: str | os.PathLike[str] | None = None, *,
         recursive: bool = False, suffix: str = "_x4", fmt: str = "same",
         overwrite: bool = False) -> tuple[list[Task], list[FileResult]]:
    """The files to upscale and the inputs settled without work, as ``attnsr upscale``
    decides them: (tasks, results for attnsr outputs among the inputs, missing inputs and
    outputs that exist or would replace an input)."""
    local = [i for i in inputs if not is_url(i)]
    urls = [i for i in inputs if is_url(i)]
    out = None if output is None else str(output)
    settled: list[FileResult] = []
    tasks: list[Task] = []
    if local:
        tasks, missing, own = _plan_local(local, out, recursive=recursive, suffix=suffix,
                                          fmt=fmt)
        settled += [FileResult(input=str(j.src), status="skipped",
                               error=f"{j.src}: an attnsr output (name it explicitly to "
                               "upscale it again)") for j in own]
    else:
        missing = []
    if urls:
        more, missing_urls = _plan_urls(urls, out, recursive=recursive, suffix=suffix, fmt=fmt)
        tasks += more
        missing += missing_urls
    if not tasks:  # as the local command: a usage error, before any work
        if settled:
            raise ConfigError("no input images left: every match is an attnsr output")
        raise ConfigError(f"no input images matched: {' '.join(inputs)}")
    settled += [FileResult(input=m, status="failed",
                           error=f"{m}: no such file or no images matched") for m in missing]
    srcs = {t.src if is_url(t.src) else str(Path(t.src).resolve()) for t in tasks}
    todo = []
    for task in tasks:
        why = _why_skip(task, srcs, overwrite)
        if why:
            settled.append(FileResult(input=task.src, output=task.dst, status="skipped",
                                      error=why, input_bytes=_size(task.src)))
        else:
            todo.append(task)
    return todo, settled


def _plan_local(inputs: list[str], output: str | None, *, recursive: bool, suffix: str,
                fmt: str) -> tuple[list[Task], list[str], list[Job]]:
    out = None if output is None or is_url(output) else Path(output)
    jobs, missing = expand_inputs(inputs, recursive, exclude=out)
    jobs, own = drop_own_outputs(jobs, suffix)
    single = single_output(jobs, out)
    tasks = []
    for job in jobs:
        if output is not None and is_url(output):
            fs, root = _fs(output)
            dst = fs.unstrip_protocol(str(output_path(job, Path(root), single=single,
                                                      suffix=suffix, fmt=fmt)))
        else:
            dst = str(output_path(job, out, single=single, suffix=suffix, fmt=fmt))
        tasks.append(Task(str(job.src), dst))
    return tasks, missing, own


def _why_skip(task: Task, srcs: set[str], overwrite: bool) -> str:
    if not is_url(task.dst):
        return why_skip(Path(task.dst), {Path(s) for s in srcs if not is_url(s)}, overwrite)
    if overwrite:
        return ""
    if task.dst in srcs:
        return f"{task.dst}: would overwrite an input image (use --overwrite)"
    return f"{task.dst}: exists (use --overwrite)" if _exists(task.dst) else ""


# --------------------------------------------------------------------------- workers
def drop_stale_parts(dst: str) -> int:
    """Remove the temporary files of ``dst`` (``.<name>.*.tmp``, from
    :func:`attnsr.fs.atomic_write`) left by a writer that was killed: SIGKILL skips the
    atomic write's clean-up. The retry of a file calls this before writing it (one job
    never writes one output from two places). Returns how many were removed."""
    if is_url(dst):
        return 0
    path = Path(dst)
    parts = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for part in parts:
        part.unlink(missing_ok=True)
    return len(parts)


def run_task(up: Any, task: Task, spec: UpscaleSpec, software: str) -> FileResult:
    """Upscale one task with ``up`` (an Upscaler) through the local command's per-file
    function; failures of the file become a ``failed`` result, as in the local loop."""
    from attnsr.inference.upscale import upscale_path

    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    local_src: Path | None = None
    try:
        drop_stale_parts(task.dst)
        with _local_input(task.src) as local_src, _local_output(task.dst) as local_dst:
            mp = upscale_path(up, local_src, local_dst, quality=spec.quality,
                              max_pixels=spec.max_pixels, software=software,
                              media=spec.media)
    except _FILE_ERRORS as exc:
        msg = str(exc) if isinstance(exc, AttnsrError) else f"{task.src}: {exc}"
        if local_src is not None and str(local_src) != task.src:
            msg = msg.replace(str(local_src), task.src)
        return FileResult(input=task.src, output=task.dst, status="failed", error=msg,
                          input_bytes=_size(task.src), worker=worker,
                          seconds=time.perf_counter() - start)
    return FileResult(input=task.src, output=task.dst, status="done",
                      input_bytes=_size(task.src), output_bytes=_size(task.dst),
                      megapixels=mp, seconds=time.perf_counter() - start, worker=worker)


class UpscaleWorker:
    """The Ray Data actor: loads the model once, then upscales batches of tasks.

    Batches are ``{"src": (N,), "dst": (N,)}`` string arrays; what comes back is the
    :class:`FileResult` fields as columns."""

    def __init__(self, spec: UpscaleSpec) -> None:
        import torch

        from attnsr.inference.upscale import Upscaler, output_marker

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.up = Upscaler(spec.model, **spec.upscaler_args())
        self.software = output_marker(self.up)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        results = [run_task(self.up, Task(str(s), str(d)), self.spec, self.software)
                   for s, d in zip(batch["src"], batch["dst"], strict=True)]
        return {f.name: [getattr(r, f.name) for r in results] for f in fields(FileResult)}


# --------------------------------------------------------------------------- driver
def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray Data: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs here;
    ``ray://host:10001``: a remote head) or, with None, start a local one. A Ray already
    initialised in this process is used as it is."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--address {address}: cannot join a Ray cluster ({first})"
                              ) from None
    # attnsr reports progress itself: Ray Data's bars and INFO lines would interleave
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _pool_size(ray: Any, workers: int | None, cpus: float, gpus: float) -> int:
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers {workers}: use 1 or more")
        return workers
    res = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(res.get("GPU", 0) // gpus))
    return max(1, int(res.get("CPU", 1) // cpus))


def _results(ray: Any, tasks: list[Task], spec: UpscaleSpec, *, workers: int, cpus: float,
             gpus: float) -> Iterator[FileResult]:
    """Stream the tasks through the actor pool; results in completion order."""
    # Blocks are the unit Ray retries: small enough to spread and to redo cheaply.
    blocks = min(len(tasks), max(8 * workers, math.ceil(len(tasks) / 64)))
    ds = ray.data.from_items([{"src": t.src, "dst": t.dst} for t in tasks],
                             override_num_blocks=blocks)
    ds = ds.map_batches(UpscaleWorker, fn_constructor_args=(spec,), batch_size=1,
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
                        num_gpus=gpus or None)
    for row in ds.iter_rows():
        yield FileResult(**{f.name: _plain(row[f.name]) for f in fields(FileResult)})


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_manifest(path: str | os.PathLike[str], results: Sequence[FileResult]) -> Path:
    """One JSON object per input (:class:`FileResult`), written atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text("".join(json.dumps(asdict(r)) + "\n" for r in results))
    return Path(path)


def _manifest_path(manifest: str | os.PathLike[str] | None, output: Any) -> Path:
    if manifest is not None:
        return Path(manifest)
    if output is not None and not is_url(output) and Path(output).is_dir():
        return Path(output) / MANIFEST_NAME
    return Path(MANIFEST_NAME)


def upscale_dataset(
    inputs: str | Sequence[str], output: str | os.PathLike[str] | None = None, *,
    model: str | None = None, scale: int | None = None, recursive: bool = False,
    suffix: str | None = None, fmt: str = "same", overwrite: bool = False,
    address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0, manifest: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None, **options: Any,
) -> BatchReport:
    """Upscale files, folders, globs or fsspec URLs on a Ray cluster, as ``attnsr
    upscale`` does on one machine (same names, formats, metadata, skips and failures).

    Args:
        inputs: paths, folders, globs, or URLs (``s3://bucket/scans/``).
        output: folder or URL prefix (created); None: next to each input.
        model, scale: as ``attnsr upscale --model/--scale``.
        address: None (start a local Ray), ``auto`` or ``ray://head:10001``.
        workers: actors (each loads the model once); None: the cluster's CPUs (or GPUs
            over ``gpus_per_worker``).
        cpus_per_worker, gpus_per_worker: Ray resources of each actor (a fraction of a
            GPU packs several actors on one GPU).
        manifest: the JSONL file written at the end; None: ``<output>/attnsr-manifest.jsonl``
            for a local output folder, else ``./attnsr-manifest.jsonl``.
        progress: called on the driver with (result, finished, to run) per file.
        options: the :class:`UpscaleSpec` fields (``tile``, ``device``, ``quality`` ...).

    Returns:
        a :class:`BatchReport`; nothing is raised for a bad file (see its results).
    """
    from attnsr.inference.upscale import Upscaler

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    spec = UpscaleSpec(model=model, scale=scale, **options)
    if spec.threads is None:
        spec = replace(spec, threads=max(1, int(cpus_per_worker)))
    ray = connect(address)  # first: a missing Ray is said before any model is loaded
    # on the driver, the settings are checked and the scale is known before any work
    probe = Upscaler(model, **{**spec.upscaler_args(), "device": "cpu", "precision": "auto"})
    if spec.backend == "auto" and gpus_per_worker == 0:
        # the backend measured on the driver (cached per machine) for every worker: one
        # job gives the same bytes whichever worker runs a file
        spec = replace(spec, backend=probe.runner.backend)
    suffix = f"_x{probe.scale}" if suffix is None else suffix
    tasks, settled = plan(inputs, output, recursive=recursive, suffix=suffix, fmt=fmt,
                          overwrite=overwrite)
    start = time.perf_counter()
    results = _run_pool(ray, tasks, spec, progress, workers=workers, cpus=cpus_per_worker,
                        gpus=gpus_per_worker) if tasks else []
    ordered = _in_input_order(settled + results)
    path = write_manifest(_manifest_path(manifest, output), ordered)
    return BatchReport(results=ordered, seconds=time.perf_counter() - start, manifest=path,
                       model=probe.runner.name, scale=probe.scale)


def _run_pool(ray: Any, tasks: list[Task], spec: UpscaleSpec, progress: ProgressFn | None, *,
              workers: int | None, cpus: float, gpus: float) -> list[FileResult]:
    """Run ``tasks`` on the actor pool, calling ``progress`` per finished file; one
    result per task, in task order."""
    pool = _pool_size(ray, workers, cpus, gpus)
    done: dict[Task, FileResult] = {}
    for result in _results(ray, tasks, spec, workers=pool, cpus=cpus, gpus=gpus):
        done[Task(result.input, result.output)] = result
        if progress is not None:
            progress(result, len(done), len(tasks))
    return [done.get(t) or FileResult(input=t.src, output=t.dst, status="failed",
                                      error=f"{t.src}: no result from the cluster")
            for t in tasks]


def _in_input_order(results: list[FileResult]) -> list[FileResult]:
    """Sorted by input name (the cluster finishes files in any order)."""
    return sorted(results, key=lambda r: r.input)
