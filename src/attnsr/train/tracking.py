"""What a run reports: ``metrics.jsonl`` records, TensorBoard scalars, a rich progress bar
(or plain log lines when the output is not a terminal)."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("attnsr.train")


def truncate_jsonl(path: Path, keep_until: int) -> None:
    """Drop records with ``iter > keep_until`` (steps redone after a resume); ``0`` empties."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if keep_until > 0 and json.loads(line).get("iter", 0) <= keep_until:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


class RunLog:
    """Appends JSON records to ``<run>/metrics.jsonl`` and scalars to TensorBoard."""

    def __init__(self, run_dir: Path, *, jsonl: bool = True, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl" if jsonl else None
        self.tb = _tensorboard_writer(run_dir / "tb") if tensorboard else None

    def write(self, record: dict[str, Any]) -> None:
        """One record (``iter`` and ``event`` keys plus values); numbers also go to TB."""
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(_finite_or_none(record)) + "\n")
        if self.tb is not None:
            step, event = record["iter"], record.get("event", "train")
            for key, value in _flatten(record).items():
                if key not in ("iter", "time") and isinstance(value, int | float) \
                        and math.isfinite(value):
                    self.tb.add_scalar(f"{event}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _finite_or_none(value: Any) -> Any:
    """NaN/inf become ``null`` so every line is standard JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        log.info("tensorboard is not installed: logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(folder))


def format_status(loss: float, lr: float, val_psnr: float | None) -> str:
    val = f"  val {val_psnr:.3f} dB" if val_psnr is not None else ""
    return f"loss {loss:.5f}  lr {lr:.2e}{val}"


class Progress:
    """A rich progress bar (it/s, loss, lr, ETA, last validation PSNR) on a terminal, else
    one log line every ``every`` iterations."""

    def __init__(self, total: int, start: int, *, enabled: bool, every: int,
                 console: Any = None) -> None:
        self.total, self.start, self.every = total, start, every
        self.console = console  # a rich Console for the bar (default: a new stderr one)
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.excluded = 0.0  # seconds spent validating: not part of the training speed
        self.bar: Any = None
        self.task: Any = None
        if self.enabled:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=self.console or Console(stderr=True), transient=False)
        self.bar.start()
        self.task = self.bar.add_task("train", total=self.total, completed=self.start,
                                      speed="", status="")

    def rate(self, iteration: int) -> float:
        done = iteration - self.start
        return done / max(1e-9, time.perf_counter() - self.t0 - self.excluded)

    def update(self, iteration: int, loss: float, lr: float, val_psnr: float | None) -> None:
        """After step ``iteration`` (1-based count of finished steps)."""
        rate = self.rate(iteration)
        status = format_status(loss, lr, val_psnr)
        if self.bar is not None:
            self.bar.update(self.task, completed=iteration, speed=f"{rate:.2f} it/s",
                            status=status)
        elif iteration % self.every == 0 or iteration == self.total:
            eta = (self.total - iteration) / rate if rate > 0 else math.inf
            log.info("iter %d/%d  %s  %.2f it/s  ETA %s", iteration, self.total, status,
                     rate, _fmt_seconds(eta))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
