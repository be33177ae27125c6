"""Validation during training: the paper protocol (PSNR/SSIM on Y, ``shave = scale``) on
benchmark folders, through the evaluation engine :mod:`attnsr.evaluate` when present."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnsr.errors import ConfigError
from attnsr.train.config import TrainConfig, resolve

log = logging.getLogger("attnsr.train")


def check_val_sets(config: TrainConfig) -> None:
    """Every validation folder exists (checked before training starts)."""
    for i, folder in enumerate(config.val.sets):
        if not resolve(config.val.root, folder).is_dir():
            raise ConfigError(f"val.sets[{i}]: folder not found: {folder}")


def run_validation(model: nn.Module, config: TrainConfig) -> dict[str, Any]:
    """Evaluate ``model`` (``(B, C, H, W)`` [0, 1] -> ``(B, C, sH, sW)``) on ``val.sets``.

    Returns ``{"psnr": mean over sets, "ssim": mean, "sets": {name: {"psnr", "ssim"}}}``.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    try:
        per_set = {Path(s).name: _evaluate_set(model, resolve(config.val.root, s), config)
                   for s in config.val.sets}
    finally:
        model.train(was_training)
    psnr = float(np.mean([r["psnr"] for r in per_set.values()]))
    ssim = float(np.mean([r["ssim"] for r in per_set.values()]))
    return {"psnr": psnr, "ssim": ssim, "sets": per_set}


def _evaluate_set(model: nn.Module, folder: Path, config: TrainConfig) -> dict[str, float]:
    from attnsr.descriptor import describe

    desc = describe(model)
    scores = [evaluate_pair(_upscale(desc, lr), hr, config.scale)
              for lr, hr in _pairs(folder, config.scale, config.val.max_images)]
    if not scores:
        raise ConfigError(f"val.sets: no images in {folder}")
    return {"psnr": float(np.mean([s[0] for s in scores])),
            "ssim": float(np.mean([s[1] for s in scores]))}


def _upscale(desc: Any, lr: np.ndarray) -> np.ndarray:
    """uint8 ``(h, w, 3)`` -> uint8 ``(sh, sw, 3)`` through the model descriptor."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255.0).to(desc.device)
    sr = desc(x)[0].permute(1, 2, 0).cpu().numpy()
    return np.round(sr * 255.0).clip(0, 255).astype(np.uint8)


def _pairs(folder: Path, scale: int, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 pairs of a benchmark set: ``HR/`` + ``LR_bicubic/X{s}/`` when present,
    else LR made with the MATLAB bicubic from the mod-cropped HR."""
    from attnsr.data.resize import imresize
    from attnsr.train.data import list_images, load_uint8, modcrop

    hr_dir = folder / "HR" if (folder / "HR").is_dir() else folder
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    paths = list_images(hr_dir)[: limit or None]
    out = []
    for p in paths:
        hr = modcrop(load_uint8(p), scale)
        named = [lr_dir / f"{p.stem}x{scale}{p.suffix}", lr_dir / p.name]
        lr_path = next((n for n in named if n.is_file()), None)
        lr = load_uint8(lr_path) if lr_path is not None else imresize(hr, 1.0 / scale)
        out.append((lr, hr))
    return out


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """``attnsr.metrics.evaluate_pair`` (Y PSNR/SSIM, shave = scale); a Y-PSNR-only
    stand-in (SSIM NaN) while that module is missing."""
    try:
        from attnsr.metrics import evaluate_pair as metric
    except ModuleNotFoundError:
        return _psnr_y(sr, hr, scale), float("nan")
    return metric(sr, hr, scale)


def _psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    coef = np.array([65.481, 128.553, 24.966]) / 255.0
    y_sr = sr.astype(np.float64) @ coef + 16.0
    y_hr = hr.astype(np.float64) @ coef + 16.0
    d = (y_sr - y_hr)[scale:-scale, scale:-scale]
    return float(10.0 * np.log10(255.0**2 / max(np.mean(d * d), 1e-10)))
