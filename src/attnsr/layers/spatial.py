"""Spatial attention (CBAM, Woo et al. 2018) and the full CBAM block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnsr.layers.channel import ChannelAttention


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``x * sigmoid(conv_kxk([mean_c(x), max_c(x)]))``.

    Args:
        kernel_size: side of the conv over the two pooled maps (odd; CBAM uses 7).

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W); the map (:meth:`weights`) is
    (B, 1, H, W) in (0, 1).
    """

    def __init__(self, *, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def weights(self, x: Tensor) -> Tensor:
        """The attention map (B, 1, H, W) in (0, 1)."""
        pooled = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # B, 2, H, W
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class CBAM(nn.Module):
    """Convolutional block attention: channel attention, then spatial attention.

    Args:
        channels: C.
        reduction: channel-attention bottleneck ratio.
        kernel_size: spatial-attention kernel side.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, *, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels=channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
