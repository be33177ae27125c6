"""Tiny training fixtures shared by tests/test_train_*.py: generated images, a tiny config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from attnsr.train.config import TrainConfig, load_config

TINY_MODEL = {"name": "attnsr_lite", "overrides": {"channels": 4, "n_blocks": 1,
                                                   "context_kernel": 3}}


def make_images(folder: Path, n: int = 4, size: tuple[int, int] = (32, 32),
                seed: int = 0, suffix: str = "") -> list[Path]:
    """``n`` smooth random RGB PNGs (``H, W = size``) named ``img{i}{suffix}.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    paths = []
    for i in range(n):
        # Low-frequency content upsampled + a little noise: learnable, not constant.
        coarse = rng.random((h // 4 + 1, w // 4 + 1, 3))
        img = np.kron(coarse, np.ones((4, 4, 1)))[:h, :w] * 0.8 + rng.random((h, w, 3)) * 0.2
        path = folder / f"img{i}{suffix}.png"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def tiny_values(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """Raw config mapping of a tiny x2 run on generated 32x32 images."""
    train_dir = tmp_path / "train"
    if not train_dir.exists():
        make_images(train_dir)
    values: dict[str, Any] = {
        "scale": 2, "total_iters": 6, "batch_size": 4, "run_dir": str(tmp_path / "run"),
        "model": dict(TINY_MODEL),
        "data": {"sources": [{"hr_dir": str(train_dir)}], "patch_size": 8},
        "optim": {"lr": 2e-3},
        "schedule": {"name": "cosine", "warmup_iters": 1},
        "log": {"every": 1, "tensorboard": False},
        "runtime": {"device": "cpu", "checkpoint_every": 100, "seed": 1},
    }
    for key, value in changes.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def tiny_config(tmp_path: Path, **changes: Any) -> TrainConfig:
    return load_config(base=tiny_values(tmp_path, **changes))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is much faster on a busy machine (no spinning)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
