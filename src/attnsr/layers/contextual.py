"""Contextual pixel attention: a per-pixel, per-channel gate that looks at a local
neighbourhood (PAN's pixel attention widened by a depthwise large-kernel conv).

Cheap on a CPU (depthwise k x k + 1x1 per channel) and strictly local, so tiled
inference stays exact and ONNX export is trivial.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ContextualPixelAttention(nn.Module):
    """``y = x * sigmoid(conv1x1(dwconv_kxk(x)))``.

    Args:
        channels: C.
        kernel_size: side of the depthwise context window (odd).

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W); the gate is in (0, 1).
    """

    def __init__(self, *, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.context = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        self.gate = nn.Conv2d(channels, channels, 1)

    def attention(self, x: Tensor) -> Tensor:
        """The gate (B, C, H, W) in (0, 1)."""
        return torch.sigmoid(self.gate(self.context(x)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x)
