"""``attnsr train CONFIG``: train a model from a YAML/TOML config (also under torchrun)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from attnsr.cli.app import app, console, err_console, fail, handle_errors, setup_logging


@app.command("train")
@handle_errors
def train_command(
    config: Path = typer.Argument(..., help="Training config (.yaml/.yml/.toml)."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config value: --set optim.lr=2e-4 (repeatable)."),
    run_dir: Optional[Path] = typer.Option(
        None, "--run-dir", help="Run directory (default: run_dir in the config, else "
        "runs/<config name>)."),
    resume: Optional[bool] = typer.Option(
        None, "--resume/--no-resume", help="Resume from <run>/checkpoints/last.pt (default: "
        "automatically when it exists; --no-resume starts over)."),
    until: Optional[int] = typer.Option(
        None, "--until", min=0, help="Pause after this iteration (checkpoint + exported EMA "
        "weights); the same command without it resumes to the end of the schedule."),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="Start from these weights (any name or file `attnsr "
        "upscale -m` takes; tensors whose names and shapes match): model.init_from."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Log lines, no progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Train a model. Multi-GPU: torchrun --nproc_per_node=N -m attnsr train CONFIG."""
    from attnsr.train.config import load_config
    from attnsr.train.loop import train

    rank = int(os.environ.get("RANK", "0"))
    setup_logging(verbose)
    if rank != 0:  # one voice: the other ranks report warnings only
        logging.getLogger().setLevel(logging.WARNING)
    overrides = list(set_ or [])
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")
    if init_from is not None:
        overrides.append(f"model.init_from={init_from}")
    cfg = load_config(config, overrides)
    if not cfg.run_dir:
        cfg = load_config(config, [*overrides, f"run_dir=runs/{config.stem}"])
    try:
        result = train(cfg, resume=resume, progress=not no_progress, until=until,
                       console=err_console)
    except KeyboardInterrupt:  # a second Ctrl-C: stop without saving
        fail("interrupted (second Ctrl-C): nothing saved since the last checkpoint", 130)
        return
    if rank != 0:
        return
    if result.status == "interrupted":
        console.print(f"interrupted at iteration {result.iteration}: checkpoint saved in "
                      f"{result.run_dir}/checkpoints/last.pt; run the same command to resume")
        raise typer.Exit(128 + (result.signal or 2))
    if result.status == "paused":
        console.print(f"paused at iteration {result.iteration}: EMA weights in "
                      f"{result.run_dir}/model.safetensors; run without --until to continue")
        return
    best = f", best validation PSNR {result.best_psnr:.3f} dB" if result.best_psnr else ""
    console.print(f"done: {result.iteration} iterations{best}; model in {result.run_dir} "
                  f"(attnsr eval --model {result.run_dir})")
