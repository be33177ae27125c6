"""PAN pixel attention (Zhao et al. 2020): a gate per pixel and channel, alone
(:class:`PixelAttention`) or inside a convolution (:class:`PAConv`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PixelAttention(nn.Module):
    """``x * sigmoid(conv1x1(x))``: a 3-D attention map, one weight per (C, H, W).

    Args:
        channels: C.

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W); the map (:meth:`weights`) is
    (B, C, H, W) in (0, 1). Key ``conv`` matches the official ``PA`` module.
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def weights(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class PAConv(nn.Module):
    """Pixel-attention convolution: ``conv3x3(conv3x3(x) * sigmoid(conv1x1(x)))``.

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W); the gate (:meth:`weights`) is
    (B, C, H, W) in (0, 1). Keys ``k2`` (gate), ``k3``, ``k4`` match the official PAN.
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(channels, channels, 1)
        self.k3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def weights(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.k2(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.k4(self.k3(x) * self.weights(x))
