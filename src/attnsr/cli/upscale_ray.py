"""``attnsr upscale --engine ray``: the batch job of :mod:`attnsr.batch` with a progress
bar (images, MP, MP/s, failures, ETA), one line per skipped or failed file, and the
summary line of the local command plus where the manifest is.

Imported only for ``--engine ray`` (Ray loads here, not at start-up).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from attnsr.batch import BatchReport, FileResult, import_ray, upscale_dataset
from attnsr.cli.app import console, err_console, fail
from attnsr.cli.upscale_cmd import _report
from attnsr.errors import ConfigError


class _Bar:
    """The job's progress: a rich bar whose label carries MP, MP/s and failures."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                 TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=err_console, transient=True,
                                 disable=not enabled)
        self.task = self.progress.add_task("images", total=None, stats="")
        self.log_lines = not enabled
        self.start = time.perf_counter()
        self.megapixels, self.failures = 0.0, 0

    def __call__(self, result: FileResult, finished: int, total: int) -> None:
        self.megapixels += result.megapixels
        if result.status == "failed":
            self.failures += 1
            _report("[bold red]failed:[/]", result.error)
        elif self.log_lines:
            console.print(f"{result.input} -> {result.output} ({result.megapixels:.2f} MP in "
                          f"{result.seconds:.1f} s)", highlight=False, soft_wrap=True)
        rate = self.megapixels / max(time.perf_counter() - self.start, 1e-9)
        stats = f"{self.megapixels:.1f} MP {rate:.2f} MP/s {self.failures} failed"
        self.progress.update(self.task, completed=finished, total=total, stats=stats)


def _summary(report: BatchReport) -> str:
    done, mp, s = report.count("done"), report.megapixels, report.seconds
    rate = mp / s if s > 0 else 0.0
    return (f"upscaled {done} image{'s' * (done != 1)} x{report.scale} with {report.model} "
            f"on Ray: {mp:.2f} MP out in {s:.1f} s ({rate:.2f} MP/s); "
            f"{report.count('skipped')} skipped, {len(report.failed)} failed; "
            f"manifest: {report.manifest}")


def run_ray(inputs: list[str], output: Path | None, *, progress: bool, **options: Any) -> None:
    """Run the job, print skips/failures and the summary; exit 1 if a file failed."""
    try:
        import_ray()  # without Ray: one line saying how to install it, before any work
    except ConfigError as exc:
        fail(escape(str(exc)))  # the hint's [ray] is not rich markup
    bar = _Bar(progress)
    with bar.progress:
        report = upscale_dataset(inputs, output, progress=bar, **options)
    for result in report.results:
        if result.status == "skipped":
            _report("[yellow]skipped:[/]", result.error)
        elif result.status == "failed" and result.worker == "":  # never reached a worker
            _report("[bold red]failed:[/]", result.error)
    console.print(_summary(report), highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
