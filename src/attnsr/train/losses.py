"""Pixel losses: L1 (the SR default), MSE, Charbonnier; on RGB or on weighted YCbCr."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnsr.metrics import RGB_TO_YCBCR
from attnsr.train.config import LossConfig

LossFn = Callable[[Tensor, Tensor], Tensor]


def charbonnier(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: a smooth L1."""
    return torch.sqrt((sr - hr).pow(2) + eps * eps).mean()


# the metric's BT.601 matrix (rows Y, Cb, Cr); its offsets drop out of a difference
YCBCR = torch.from_numpy(RGB_TO_YCBCR).float()


def _pixel_loss(config: LossConfig) -> LossFn:
    if config.name == "l1":
        return F.l1_loss
    if config.name == "mse":
        return F.mse_loss
    eps = config.eps
    return lambda sr, hr: charbonnier(sr, hr, eps)


def make_loss(config: LossConfig) -> LossFn:
    """The loss of ``config``: ``(sr, hr) -> scalar``, both ``(B, C, H, W)`` in [0, 1]
    (mean over all; with ``space: ycbcr`` the weighted mean over Y, Cb, Cr of 3-channel
    images: ``(L(Y) + w L(Cb) + w L(Cr)) / (1 + 2 w)``)."""
    base = _pixel_loss(config)
    if config.space == "rgb":
        return base
    w = float(config.chroma_weight)

    def ycbcr_loss(sr: Tensor, hr: Tensor) -> Tensor:
        if sr.shape[1] != 3:
            return base(sr, hr)
        m = YCBCR.to(sr.device, sr.dtype)
        a = torch.einsum("kc,bchw->bkhw", m, sr)
        b = torch.einsum("kc,bchw->bkhw", m, hr.to(sr.dtype))
        luma = base(a[:, :1], b[:, :1])
        chroma = base(a[:, 1:], b[:, 1:])  # mean over Cb and Cr
        return (luma + 2.0 * w * chroma) / (1.0 + 2.0 * w)

    return ycbcr_loss
