"""Learning-rate schedules as pure functions of the iteration (nothing to checkpoint)."""

from __future__ import annotations

import bisect
import math

from attnsr.train.config import ScheduleConfig


def lr_at(iteration: int, base_lr: float, total_iters: int, config: ScheduleConfig) -> float:
    """Learning rate for optimizer step ``iteration`` (0-based).

    Linear warm-up from ``base_lr / warmup_iters`` to ``base_lr`` over ``warmup_iters``
    steps, then cosine decay to ``min_lr`` at ``total_iters``, or ``gamma`` at each
    milestone (multistep), or constant.
    """
    warm = config.warmup_iters
    if iteration < warm:
        return base_lr * (iteration + 1) / warm
    if config.name == "multistep":
        return base_lr * config.gamma ** bisect.bisect_right(config.milestones, iteration)
    if config.name == "cosine":
        span = max(1, total_iters - warm)
        t = min(1.0, (iteration - warm) / span)
        return config.min_lr + 0.5 * (base_lr - config.min_lr) * (1.0 + math.cos(math.pi * t))
    return base_lr
