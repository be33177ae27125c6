"""``attnsr upscale INPUT...``: upscale image files, folders or globs, tiled, with a
progress bar per image and overall and a summary at the end.

Exit codes: 0 all done (skipped existing outputs are fine), 1 some image failed
(reported one line each; the others continue), 2 usage errors (nothing matched,
unknown model, bad option).
"""

from __future__ import annotations

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

from attnsr.cli.app import app, console, err_console, fail, handle_errors, setup_logging
from attnsr.data.media import VIDEO_FORMATS, MediaOptions, is_video_path, media_kind
from attnsr.errors import AttnsrError
from attnsr.inference.jobs import (
    FORMATS,
    Job,
    drop_own_outputs,
    expand_inputs,
    output_path,
    single_output,
    why_skip,
)

if TYPE_CHECKING:
    from attnsr.inference.upscale import Upscaler


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


# --------------------------------------------------------------------------- outputs
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


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not enabled)


def _run_one(up: Upscaler, job: Job, dst: Path, opts: RunOptions, bar: Progress,
             task: TaskID) -> float:
    """Upscale one file; returns the megapixels written."""
    from attnsr.inference.upscale import upscale_path

    if media_kind(job.src) != "image":  # videos, animated and multi-page images
        from attnsr.cli.upscale_media import run_media

        return run_media(up, job.src, dst, opts, bar, task)
    bar.update(task, description=f"  {job.src.name}", completed=0, total=None)
    return upscale_path(up, job.src, dst, quality=opts.quality, max_pixels=opts.max_pixels,
                        software=opts.software,
                        progress_cb=lambda i, n: bar.update(task, completed=i, total=n))


def _run_all(up: Upscaler, jobs: list[Job], out: Path | None, opts: RunOptions,
             tally: Tally) -> None:
    inputs = {j.src.resolve() for j in jobs}
    single = len(jobs) == 1 and jobs[0].base is None
    with _progress(opts.progress) as bar:
        overall = bar.add_task("images", total=len(jobs))
        tiles = bar.add_task("", total=None)
        for job in jobs:
            dst = output_path(job, out, single=single, suffix=opts.suffix, fmt=opts.fmt)
            why = why_skip(dst, inputs, opts.overwrite)
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
                                "--model; on the CPU the faster of torch and onnxruntime, "
                                "measured once per model), torch, or onnxruntime (CPU; "
                                "other models are exported)."),
    fast: bool = typer.Option(False, "--fast", help="int8 (onnxruntime, CPU) graph shipped "
                              "with the bundled models: ~3x faster, <= 0.1 dB lower PSNR."),
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
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray "
                               "(a Ray cluster: pip install 'attnsr[ray]'; docs/batch.md)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto (the "
                                          "cluster `ray start` runs here) or ray://host:port "
                                          "(default: start a local one)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: "
                                          "actors, each loading the model once (default: "
                                          "one per CPU, or per GPU share)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0.0, help="--engine "
                                          "ray: GPUs per actor (0.5 packs two on a GPU)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="--engine ray: the JSONL "
                                            "record of every input (default: "
                                            "attnsr-manifest.jsonl in -o, else here)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging (attnsr's)."),
) -> None:
    """Upscale images with a super-resolution model (tiled: any image size)."""
    import torch

    from attnsr.inference.upscale import Upscaler, output_marker

    setup_logging(verbose)
    if fmt not in (*FORMATS, *VIDEO_FORMATS, "same"):
        fail(f"--format {fmt!r}: use same, png, jpg, webp, tiff, mp4, mkv, mov, webm or avi")
    if engine not in ("local", "ray"):
        fail(f"--engine {engine!r}: use local or ray")
    if engine == "ray":
        from attnsr.cli.upscale_ray import run_ray

        run_ray(inputs, output, recursive=recursive, suffix=suffix, fmt=fmt,
                overwrite=overwrite, address=address, workers=workers,
                gpus_per_worker=gpus_per_worker, manifest=manifest, progress=not no_progress,
                model=model, scale=scale, tile=_parse_tile(tile), overlap=overlap,
                device=device, precision=precision, alpha_mode=alpha, backend=backend,
                denoise=denoise, tta=tta, fast=fast, quality=quality, max_pixels=max_pixels,
                threads=threads, media=MediaOptions(codec=codec, crf=crf, pix_fmt=pix_fmt,
                                                    resume=resume))
        return
    jobs, missing = expand_inputs(inputs, recursive, exclude=output)
    if not jobs:
        fail(f"no input images matched: {' '.join(inputs)}")
    single_output(jobs, output)  # -o naming one file with several inputs: refused here
    if threads is not None:
        torch.set_num_threads(threads)
    up = Upscaler(model, scale=scale, tile=_parse_tile(tile), overlap=overlap, device=device,
                  precision=precision, alpha_mode=alpha, backend=backend, denoise=denoise,
                  tta=tta, fast=fast)
    opts = RunOptions(suffix=f"_x{up.scale}" if suffix is None else suffix, fmt=fmt,
                      overwrite=overwrite, quality=quality, max_pixels=max_pixels,
                      progress=not no_progress,
                      log_lines=no_progress or not sys.stdout.isatty(),
                      software=output_marker(up),
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
