"""Validation during training: the paper protocol (PSNR/SSIM on Y, ``shave = scale``) on
benchmark folders, through the evaluation engine :func:`attnsr.evaluate.evaluate`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from torch import nn

from attnsr.data.benchmark import BenchmarkSet
from attnsr.errors import AttnsrError, ConfigError
from attnsr.train.config import TrainConfig, resolve

log = logging.getLogger("attnsr.train")


def load_val_sets(config: TrainConfig) -> list[BenchmarkSet]:
    """The validation sets at the run's scale (``max_images`` each); raises
    :class:`ConfigError` naming the key for a missing or empty folder (before training)."""
    out = []
    for i, folder in enumerate(config.val.sets):
        path = resolve(config.val.root, folder)
        if not path.is_dir():
            raise ConfigError(f"val.sets[{i}]: folder not found: {path}")
        try:
            bset = BenchmarkSet.from_folder(path, config.scale,
                                            degradation=config.val.degradation or None)
        except AttnsrError as exc:
            raise ConfigError(f"val.sets[{i}]: {exc}") from exc
        if config.val.max_images:
            bset = dataclasses.replace(bset, hr_paths=bset.hr_paths[: config.val.max_images])
        out.append(bset)
    return out


def run_validation(model: nn.Module, sets: list[BenchmarkSet]) -> dict[str, Any]:
    """Evaluate ``model`` (``(B, C, H, W)`` [0, 1] -> ``(B, C, sH, sW)``) on ``sets``.

    Returns ``{"psnr": mean over sets, "ssim": mean, "sets": {name: {"psnr", "ssim"}}}``
    (NaN where nothing could be scored). The model's train/eval mode is restored.
    """
    from attnsr.descriptor import describe
    from attnsr.evaluate import evaluate

    was_training = model.training
    try:
        report = evaluate(describe(model), sets)
    finally:
        model.train(was_training)
    for err in report.errors:
        log.warning("validation: %s", err.message)
    per_set = {s.set: {"psnr": s.psnr, "ssim": s.ssim} for s in report.summaries()}
    if not per_set:
        return {"psnr": float("nan"), "ssim": float("nan"), "sets": {}}
    return {"psnr": float(np.mean([r["psnr"] for r in per_set.values()])),
            "ssim": float(np.mean([r["ssim"] for r in per_set.values()])),
            "sets": per_set}
