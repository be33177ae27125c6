"""``attnsr eval --model NAME --data Set5 --scale 4``: PSNR / SSIM on benchmark sets with
the papers' protocol (Y channel, shave = scale), as one table; optional JSON/CSV/Markdown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from attnsr.cli.app import app, console, err_console, fail, handle_errors, setup_logging
from attnsr.errors import ConfigError

EXIT_SOME_FAILED = 1


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int, str], None] | None]:
    """A transient rich progress bar on stderr, as an ``evaluate`` progress callback."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, description: str) -> None:
            bar.update(task, completed=done, total=total, description=description)

        yield update


def summary_table(report: Any) -> Table:
    table = Table(title=f"{report.model}: {'Y' if report.y_channel else 'RGB'} PSNR / SSIM "
                        "(shave = scale)")
    for col in ("Set", "Scale", "PSNR (dB)", "SSIM", "Images", "Seconds"):
        table.add_column(col, justify="left" if col == "Set" else "right")
    for s in report.summaries():
        table.add_row(s.set, f"x{s.scale}", f"{s.psnr:.3f}", f"{s.ssim:.4f}", str(s.images),
                      f"{s.seconds:.2f}")
    return table


def per_image_table(report: Any) -> Table:
    table = Table(title="Per image")
    for col in ("Set", "Scale", "Image", "PSNR (dB)", "SSIM", "Seconds"):
        table.add_column(col, justify="left" if col in ("Set", "Image") else "right")
    for r in report.results:
        table.add_row(r.set, f"x{r.scale}", r.image, f"{r.psnr:.3f}", f"{r.ssim:.4f}",
                      f"{r.seconds:.3f}")
    return table


@app.command("eval")
@handle_errors
def eval_command(
    model: str = typer.Option(
        ..., "--model", "-m", help="Pretrained name (attnsr-x4), checkpoint path, .onnx file "
        "or bicubic."),
    data: list[Path] = typer.Option(
        ..., "--data", "-d", help="Benchmark folder (<set>/HR and optional "
        "<set>/LR_bicubic/X<s>); repeatable."),
    scale: list[int] = typer.Option(
        ..., "--scale", "-s", help="Upscaling factor; repeatable."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the results as .json, .csv or .md."),
    per_image: bool = typer.Option(False, "--per-image", help="Also print every image."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, mps)."),
    rgb: bool = typer.Option(False, "--rgb", help="Score RGB instead of the Y channel."),
    gray_as_rgb: bool = typer.Option(
        False, "--gray-as-rgb", help="Score a grayscale HR (Set14 bridge) as three equal "
        "channels through rgb2ycbcr, as BasicSR/EDSR code and most papers' model rows do "
        "(+0.094 dB on Set14); default: gray values, as the papers' MATLAB bicubic rows."),
    degradation: Optional[str] = typer.Option(
        None, "--degradation", help="Make the LR images from the HR with a real-world "
        "preset instead of bicubic (seeded per image): jpeg, noise, blur or mixed."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch or onnxruntime."),
    tta: bool = typer.Option(False, "--tta", help="x8 self-ensemble (flips/transposes)."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Refuse images above this many pixels (default: "
        "$ATTNSR_MAX_PIXELS or 178956970; 0: no limit)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Evaluate a model on benchmark sets (PSNR / SSIM as the papers compute them)."""
    from attnsr import resolver
    from attnsr.evaluate import build_sets, evaluate, report_writer

    setup_logging(verbose)
    if output is not None:
        report_writer(output)  # an unknown format fails before any work
    bad = [s for s in scale if s < 1]
    if bad:
        raise ConfigError(f"--scale {bad[0]}: must be a positive integer")
    scales = list(dict.fromkeys(scale))
    sets = build_sets(data, scales, max_pixels=max_pixels, degradation=degradation)
    models = {s: resolver.resolve(model, scale=s, backend=backend, device=device,
                                  precision="fp32", tta=tta) for s in scales}
    with progress_bar(not no_progress) as progress:
        report = evaluate(models, sets, progress=progress, y_channel=not rgb,
                          gray_as_rgb=gray_as_rgb,
                          name=model + (f" ({degradation} inputs)" if degradation else ""))
    for err in report.errors[: -1 if not report.results else None]:
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False, soft_wrap=True)
    if not report.results:  # nothing to report: the last error ends the run, nothing written
        fail(report.errors[-1].message if report.errors else "no images evaluated")
    console.print(summary_table(report))
    if per_image:
        console.print(per_image_table(report))
    if output is not None:
        report.write(output)
        console.print(f"results written to {output}")
    if report.errors:
        raise typer.Exit(EXIT_SOME_FAILED)
