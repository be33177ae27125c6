"""Pixel losses: L1 (the SR default), MSE, Charbonnier."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnsr.train.config import LossConfig

LossFn = Callable[[Tensor, Tensor], Tensor]


def charbonnier(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: a smooth L1."""
    return torch.sqrt((sr - hr).pow(2) + eps * eps).mean()


def make_loss(config: LossConfig) -> LossFn:
    """The loss of ``config``: ``(sr, hr) -> scalar``, both ``(B, C, H, W)`` (mean over all)."""
    if config.name == "l1":
        return F.l1_loss
    if config.name == "mse":
        return F.mse_loss
    eps = config.eps
    return lambda sr, hr: charbonnier(sr, hr, eps)
