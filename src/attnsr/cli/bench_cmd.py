"""``attnsr bench``: latency, throughput, memory, parameters and MACs of models."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

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


COLUMNS = ("model", "params", "GMACs 720p", "GMACs input", "median ms", "min ms",
           "peak MiB", "out MP/s")


def _cells(r: Any) -> list[str]:
    if r.error:
        return [r.model, *["-"] * 6, r.error[:60]]
    return [r.model, f"{r.params / 1e6:.3f}M" if r.params else "0", _g(r.macs_720p),
            _g(r.macs_input), f"{r.latency_ms:,.1f}", f"{r.latency_min_ms:,.1f}",
            f"{r.peak_memory_mib:,.1f}", f"{r.output_mpix_per_s:.3f}"]


def results_table(results: Sequence, title: str) -> Table:
    """A rich table of :class:`~attnsr.bench.BenchResult` rows. Number columns never wrap
    or shrink below their widest cell (on a narrow terminal the model names and the
    headers fold instead), so no number is ever cut."""
    rows = [_cells(r) for r in results]
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(COLUMNS):
        widest = max((len(row[i]) for row in rows), default=1)
        if i == 0:
            table.add_column(col, justify="left", overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True, min_width=widest,
                             overflow="fold" if i == len(COLUMNS) - 1 else "ellipsis")
    for r, row in zip(results, rows, strict=True):
        table.add_row(*row[:-1], f"[red]{row[-1]}[/]" if r.error else row[-1])
    return table


class EtaReporter:
    """One progress line per model: ``benchmarking NAME (i/n, ETA m:ss)``; the ETA is the
    mean time per finished model times the models left."""

    def __init__(self, total: int) -> None:
        self.total, self.start, self.done = total, time.perf_counter(), 0

    def __call__(self, name: str) -> None:
        elapsed = time.perf_counter() - self.start
        eta = (f", ETA {_clock(elapsed / self.done * (self.total - self.done))}"
               if self.done else "")
        self.done += 1
        err_console.print(f"benchmarking {name} ({self.done}/{self.total}{eta}) ...",
                          highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


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
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Allow registered models without pretrained weights "
        "(random initialisation: speed and memory do not depend on the weights). Implied "
        "when no --model is given (the lightweight presets)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write a JSON report "
                                             "(- : print only the JSON to stdout)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown",
                                            help="Also write a Markdown table."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Benchmark models on one LR input (whole image, no tiling)."""
    from attnsr.bench import BenchConfig, bench, report, to_markdown

    setup_logging(verbose)
    cfg = BenchConfig(backend=backend, precision=precision, device=device,
                      size=parse_size(size), scale=scale, runs=runs, warmup=warmup,
                      threads=threads, isolate=isolate,
                      random_weights=random_weights or not model)
    from attnsr.bench import FLOOR, default_models

    names = list(model) if model else default_models(cfg.scale)
    names = [FLOOR] + [n for n in dict.fromkeys(names) if n != FLOOR]
    results = bench(names, cfg, progress=EtaReporter(len(names)))
    data = report(results, cfg)
    if json_path is not None and str(json_path) == "-":
        typer.echo(json.dumps(data, indent=2))
        return
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
