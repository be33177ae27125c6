"""``attnsr upscale INPUT...``: upscale image files, folders or globs, tiled, with a
progress bar per image and overall and a summary at the end.

Exit codes: 0 all done (skipped existing outputs are fine), 1 some image failed
(reported one line each; the others continue), 2 usage errors (nothing matched,
unknown model, bad option).
"""

from __future__ import annotations

import glob
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from attnsr import __version__
from attnsr.cli.app import app, console, err_console, fail, handle_errors, setup_logging
from attnsr.data.io import IMAGE_EXTENSIONS, is_attnsr_output, read_image
from attnsr.data.media import (
    MEDIA_EXTENSIONS,
    VIDEO_FORMATS,
    MediaOptions,
    is_video_path,
    media_extension,
    media_kind,
)
from attnsr.errors import AttnsrError

if TYPE_CHECKING:
    from attnsr.inference.upscale import Upscaler

FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
           "tif": ".tif"}
_GLOB_CHARS = set("*?[")
_INPUT_EXTENSIONS = IMAGE_EXTENSIONS + MEDIA_EXTENSIONS  # images, animations, videos


@dataclass(frozen=True)
class Job:
    """One image: ``src`` and, when it came from a folder or glob, the ``base`` folder
    its relative path is kept under (in ``-o``)."""

    src: Path
    base: Path | None = None


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    suffix: str
    fmt: str
    overwrite: bool
    quality: int
    max_pixels: int | None
    progress: bool
    log_lines: bool  # one line per file (stdout is not a terminal)
    software: str  # the marker written into every output's metadata
    media: MediaOptions = field(default_factory=MediaOptions)  # video encoder settings


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0


# --------------------------------------------------------------------------- inputs
def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _INPUT_EXTENSIONS


def _glob_base(pattern: str) -> Path:
    """The folder part of ``pattern`` before the first glob character."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]]
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(
    inputs: list[str], recursive: bool, exclude: Path | None = None
) -> tuple[list[Job], list[str]]:
    """Jobs for files, folders (image files in them; all levels with ``recursive``) and
    globs (``**`` with ``recursive``), de-duplicated in order; plus the inputs that
    matched nothing. Folder and glob matches inside ``exclude`` (the output folder) are
    left out, so re-runs do not upscale earlier results."""
    jobs: list[Job] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = path.rglob("*") if recursive else path.iterdir()
            found = [Job(f, path) for f in sorted(files) if _is_image(f)]
        elif path.exists():
            found = [Job(path)]
        elif _GLOB_CHARS & set(item):
            base = _glob_base(item)
            found = [Job(Path(f), base) for f in sorted(glob.glob(item, recursive=recursive))
                     if _is_image(Path(f))]
        else:
            found = []
        if not found:
            missing.append(item)
        jobs.extend(found)
    seen: set[Path] = set()
    if exclude is not None:
        seen.update(j.src.resolve() for j in jobs
                    if j.base is not None and j.src.resolve().is_relative_to(exclude.resolve()))
    unique = [j for j in jobs if not (j.src.resolve() in seen or seen.add(j.src.resolve()))]
    return unique, missing


def _sibling_source(path: Path, suffix: str) -> bool:
    """``a_x4.png`` next to an ``a.*`` image: named like this tool's output of it."""
    stem = path.stem
    if not suffix or not stem.endswith(suffix) or stem == suffix:
        return False
    base = stem[: -len(suffix)]
    return any(p.is_file() for p in path.parent.glob(f"{glob.escape(base)}.*")
               if p.suffix.lower() in _INPUT_EXTENSIONS and p != path)


def drop_own_outputs(jobs: list[Job], suffix: str) -> tuple[list[Job], list[Job]]:
    """Split folder/glob matches into (inputs, attnsr outputs): a file is an output of
    this tool when its metadata carries attnsr's marker, or when it is named like one
    (``<stem><suffix>``) next to its source. Files named on the command line are kept."""
    keep, own = [], []
    for job in jobs:
        mine = job.base is not None and (is_attnsr_output(job.src)
                                         or _sibling_source(job.src, suffix))
        (own if mine else keep).append(job)
    return keep, own


def check_writable(folders: set[Path]) -> None:
    """Create the output folders and write a probe file in each, before any work: an
    unwritable destination fails in one line (exit 2), not after every image."""
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".attnsr-probe-"):
                pass
        except OSError as exc:
            fail(f"{folder}: output folder is not writable ({exc.strerror or exc})")


# --------------------------------------------------------------------------- outputs
def _extension(src: Path, fmt: str) -> str:
    media = media_extension(src, fmt)  # videos and GIF/APNG
    if media is not None:
        return media
    if fmt == "same" or fmt in VIDEO_FORMATS:  # a container format applies to videos only
        ext = src.suffix.lower()
        return ext if ext in IMAGE_EXTENSIONS else ".png"
    return FORMATS[fmt]


def output_path(job: Job, out: Path | None, *, single: bool, suffix: str, fmt: str) -> Path:
    """Where ``job``'s result goes: ``out`` itself when it names a file for a single
    input, else ``<out or the input's folder>/[relative folder/]<stem><suffix><ext>``."""
    if out is not None and single and not out.is_dir() and out.suffix.lower() in _INPUT_EXTENSIONS:
        return out
    name = f"{job.src.stem}{suffix}{_extension(job.src, fmt)}"
    if out is None:
        return job.src.parent / name
    rel = job.src.parent.relative_to(job.base) if job.base is not None else Path()
    return out / rel / name


# --------------------------------------------------------------------------- running
def _parse_tile(tile: str) -> int | str:
    if tile == "auto":
        return "auto"
    try:
        value = int(tile)
    except ValueError:
        value = -1
    if value < 0:
        fail(f"--tile {tile!r}: use auto, 0 (no tiling) or a size in pixels")
    return value


def _why_skip(dst: Path, inputs: set[Path], overwrite: bool) -> str:
    if overwrite:
        return ""
    if dst.resolve() in inputs:
        return f"{dst}: would overwrite an input image (use --overwrite)"
    if dst.exists():
        return f"{dst}: exists (use --overwrite)"
    return ""


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not enabled)


def _run_one(up: Upscaler, job: Job, dst: Path, opts: RunOptions, bar: Progress,
             task: TaskID) -> float:
    """Upscale one file; returns the megapixels written."""
    from attnsr.inference.upscale import save_like

    if media_kind(job.src) != "image":  # videos, animated and multi-page images
        from attnsr.cli.upscale_media import run_media

        return run_media(up, job.src, dst, opts, bar, task)
    img = read_image(job.src, max_pixels=opts.max_pixels)
    bar.update(task, description=f"  {job.src.name}", completed=0, total=None)
    out = up.upscale_loaded(img, lambda i, n: bar.update(task, completed=i, total=n))
    save_like(dst, out, img, quality=opts.quality, software=opts.software)
    return out.shape[0] * out.shape[1] / 1e6


def _run_all(up: Upscaler, jobs: list[Job], out: Path | None, opts: RunOptions,
             tally: Tally) -> None:
    inputs = {j.src.resolve() for j in jobs}
    single = len(jobs) == 1 and jobs[0].base is None
    with _progress(opts.progress) as bar:
        overall = bar.add_task("images", total=len(jobs))
        tiles = bar.add_task("", total=None)
        for job in jobs:
            dst = output_path(job, out, single=single, suffix=opts.suffix, fmt=opts.fmt)
            why = _why_skip(dst, inputs, opts.overwrite)
            if why:
                tally.skipped += 1
                _report("[yellow]skipped:[/]", why)
            else:
                start = time.perf_counter()
                try:
                    mp = _run_one(up, job, dst, opts, bar, tiles)
                    tally.megapixels += mp
                    tally.done += 1
                    if opts.log_lines:
                        seconds = time.perf_counter() - start
                        console.print(f"{job.src} -> {dst} ({mp:.2f} MP in {seconds:.1f} s)",
                                      highlight=False, soft_wrap=True)
                except (AttnsrError, OSError, RuntimeError, MemoryError) as exc:
                    msg = str(exc) if isinstance(exc, AttnsrError) else f"{job.src}: {exc}"
                    tally.failed.append(msg)
                    _report("[bold red]failed:[/]", msg)
                tally.seconds += time.perf_counter() - start
            bar.advance(overall)


def _report(tag: str, message: str) -> None:
    """One line per skipped/failed file, never wrapped (scripts grep for the name)."""
    err_console.print(f"{tag} {escape(message)}", highlight=False, soft_wrap=True)


def _summary(tally: Tally, up: Upscaler) -> str:
    rate = tally.megapixels / tally.seconds if tally.seconds > 0 else 0.0
    desc = up.descriptor
    return (f"upscaled {tally.done} image{'s' * (tally.done != 1)} x{desc.scale} with "
            f"{desc.name}: {tally.megapixels:.2f} MP out in {tally.seconds:.1f} s "
            f"({rate:.2f} MP/s); {tally.skipped} skipped, {len(tally.failed)} failed")


@app.command("upscale")
@handle_errors
def upscale_command(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Output folder (created), or a file for one input. "
        "Default: next to each input."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Pretrained name (attnsr-x4; `attnsr models "
        "--pretrained`), checkpoint or .onnx path (default: the bundled real-world model "
        "for --scale)."),
    scale: Optional[int] = typer.Option(None, "--scale", "-s", help="Upscaling factor "
                                        "(default: the model's; 4 without --model)."),
    tile: str = typer.Option("auto", "--tile", help="Tile side in LR pixels, auto (from "
                             "free memory) or 0 (whole image)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Tile overlap in LR "
                                          "pixels (default: from the receptive field)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
    backend: str = typer.Option("auto", "--backend", help="auto (onnxruntime for an .onnx "
                                "--model, else torch), torch, or onnxruntime (CPU; other "
                                "models are exported)."),
    denoise: Optional[float] = typer.Option(
        None, "--denoise", min=0.0, max=1.0, help="0..1: blend the clean (0, keeps grain) "
        "and the real-world (1, removes noise/JPEG) bundled weights; default: the model "
        "as named."),
    fmt: str = typer.Option("same", "--format", help="same, png, jpg, webp or tiff (images); "
                            "mp4, mkv, mov, webm or avi (videos)."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Appended to output names "
                                         "(default: _x<scale>)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    alpha: str = typer.Option("model", "--alpha", help="Alpha upscaling: model or bicubic."),
    quality: int = typer.Option(95, "--quality", min=1, max=100, help="JPEG/WebP quality."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse larger "
                                             "inputs (0: no limit)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads "
                                          "(default: torch's, one per core)."),
    tta: bool = typer.Option(False, "--tta", help="Quality mode: average the 8 flips/"
                             "transposes (x8 self-ensemble; 8x the time)."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Video encoder: libx264, "
                                        "libx265, libvpx-vp9, ffv1 (lossless) ... (default: "
                                        "H.264 where the container holds it)."),
    crf: Optional[int] = typer.Option(None, "--crf", min=0, max=63, help="Video constant "
                                      "quality (x264 default 18; lower is better)."),
    pix_fmt: Optional[str] = typer.Option(None, "--pix-fmt", help="Video pixel format "
                                          "(default: the input's, e.g. 10-bit stays 10-bit)."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted videos from "
                                "their last completed segment."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging (attnsr's)."),
) -> None:
    """Upscale images with a super-resolution model (tiled: any image size)."""
    import torch

    from attnsr.inference.upscale import Upscaler

    setup_logging(verbose)
    if fmt not in (*FORMATS, *VIDEO_FORMATS, "same"):
        fail(f"--format {fmt!r}: use same, png, jpg, webp, tiff, mp4, mkv, mov, webm or avi")
    jobs, missing = expand_inputs(inputs, recursive, exclude=output)
    if not jobs:
        fail(f"no input images matched: {' '.join(inputs)}")
    single = len(jobs) == 1 and jobs[0].base is None
    if (output is not None and not single and not output.is_dir()
            and output.suffix.lower() in _INPUT_EXTENSIONS):
        fail(f"-o {output}: names one file, but {len(jobs)} images matched; give a folder")
    if threads is not None:
        torch.set_num_threads(threads)
    up = Upscaler(model, scale=scale, tile=_parse_tile(tile), overlap=overlap, device=device,
                  precision=precision, alpha_mode=alpha, backend=backend, denoise=denoise,
                  tta=tta)
    opts = RunOptions(suffix=f"_x{up.scale}" if suffix is None else suffix, fmt=fmt,
                      overwrite=overwrite, quality=quality, max_pixels=max_pixels,
                      progress=not no_progress,
                      log_lines=no_progress or not sys.stdout.isatty(),
                      software=f"attnsr {__version__} ({up.runner.name}, x{up.scale})",
                      media=MediaOptions(codec=codec, crf=crf, pix_fmt=pix_fmt, resume=resume))
    jobs, own = drop_own_outputs(jobs, opts.suffix)
    if own:
        _report("[yellow]skipped:[/]", f"{len(own)} attnsr output(s) among the inputs "
                f"(e.g. {own[0].src}); name them explicitly to upscale them again")
    if not jobs:
        fail("no input images left: every match is an attnsr output")
    single = len(jobs) == 1 and jobs[0].base is None
    dsts = [output_path(j, output, single=single, suffix=opts.suffix, fmt=fmt) for j in jobs]
    check_writable({d.parent for d in dsts})
    if any(is_video_path(j.src) for j in jobs):
        from attnsr.cli.upscale_media import check_media

        check_media(((j.src, d) for j, d in zip(jobs, dsts, strict=True)), opts.media)
    tally = Tally(failed=[f"{m}: no such file or no images matched" for m in missing])
    for msg in tally.failed:
        _report("[bold red]failed:[/]", msg)
    _run_all(up, jobs, output, opts, tally)
    console.print(_summary(tally, up), highlight=False, soft_wrap=True)
    if tally.failed:
        raise typer.Exit(1)
