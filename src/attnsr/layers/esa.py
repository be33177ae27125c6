"""Enhanced spatial attention (ESA), as used by RFDN and RLFN.

This is RLFN's trimmed version (no ``conv_max`` / ``conv3_``); its keys
(``conv1``, ``conv_f``, ``conv2``, ``conv3``, ``conv4``) match RLFN checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Smallest input side: conv2 (3x3, stride 2, no padding) then a 7x7 max-pool with stride 3.
ESA_MIN_SIZE = 15


class ESA(nn.Module):
    """Enhanced spatial attention: a strided, pooled branch estimates a coarse
    attention map that is upsampled back and gates the input.

    Args:
        channels: C of the input.
        esa_channels: width of the inner branch (RLFN: 16).

    Shapes: ``x`` (B, C, H, W) with H, W >= 15 -> (B, C, H, W); the gate is in (0, 1).
    """

    def __init__(self, *, channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def weights(self, x: Tensor) -> Tensor:
        """The gate (B, C, H, W) in (0, 1)."""
        c1_ = self.conv1(x)  # B, f, H, W
        c1 = self.conv2(c1_)  # B, f, (H-3)//2+1, (W-3)//2+1
        pooled = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = F.interpolate(
            self.conv3(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False
        )  # B, f, H, W
        return torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)
