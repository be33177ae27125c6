"""``attnsr bench``: latency, throughput, memory, parameters and MACs of models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from attnsr.cli.app import app, console, err_console, handle_errors, setup_logging
from attnsr.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` -> ``(256, 192)`` (height x width); one number means square."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise ConfigError(f"--size {text!r}: expected HxW, e.g. 256x256")
    return values[0], values[1]


def _g(macs: int) -> str:
    return f"{macs / 1e9:,.1f}" if macs else "-"


def results_table(results: Sequence, title: str) -> Table:
    """A rich table of :class:`~attnsr.bench.BenchResult` rows."""
    table = Table(title=title, title_justify="left")
    for col in ("model", "params", "GMACs 720p", "GMACs input", "median ms", "min ms",
                "peak MiB", "out MP/s"):
        table.add_column(col, justify="left" if col == "model" else "right",
                         no_wrap=col == "model")
    for r in results:
        if r.error:
            table.add_row(r.model, *["-"] * 6, f"[red]{r.error[:60]}[/]")
            continue
        table.add_row(r.model, f"{r.params / 1e6:.3f}M" if r.params else "0",
                      _g(r.macs_720p), _g(r.macs_input), f"{r.latency_ms:,.1f}",
                      f"{r.latency_min_ms:,.1f}", f"{r.peak_memory_mib:,.1f}",
                      f"{r.output_mpix_per_s:.3f}")
    return table


@app.command("bench")
@handle_errors
def bench_command(
    model: Optional[list[str]] = typer.Option(
        None, "--model", "-m", help="Model to benchmark (repeatable; default: the "
        "lightweight presets). Bicubic always runs as the floor."),
    backend: str = typer.Option("torch", "--backend", help="torch or onnxruntime."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (torch)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    size: str = typer.Option("256x256", "--size", help="LR input size HxW."),
    scale: int = typer.Option(4, "--scale", "-s", help="Upscaling factor."),
    runs: int = typer.Option(10, "--runs", help="Timed runs (the median is reported)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs first."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads (torch and onnxruntime); default: theirs."),
    isolate: bool = typer.Option(True, "--isolate/--in-process",
                                 help="One subprocess per model (honest CPU memory)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write a JSON report."),
    markdown: Optional[Path] = typer.Option(None, "--markdown",
                                            help="Also write a Markdown table."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Benchmark models on one LR input (whole image, no tiling)."""
    from attnsr.bench import BenchConfig, bench, report, to_markdown

    setup_logging(verbose)
    cfg = BenchConfig(backend=backend, precision=precision, device=device,
                      size=parse_size(size), scale=scale, runs=runs, warmup=warmup,
                      threads=threads, isolate=isolate)
    results = bench(model, cfg, progress=lambda n: err_console.print(f"benchmarking {n} ..."))
    data = report(results, cfg)
    env = data["environment"]
    title = (f"x{scale}, LR {cfg.size[0]}x{cfg.size[1]}, {backend} {precision} on {device} "
             f"({env['cpu']}, {env['torch_threads']} threads), median of {runs} runs")
    console.print(results_table(results, title))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(to_markdown(data))
        console.print(f"wrote {markdown}")
