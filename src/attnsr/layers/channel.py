"""Channel attention: RCAN's squeeze-excitation gate and IMDN's contrast-aware variant.

Both keep the official module layout (``conv_du.0`` / ``conv_du.2``) so official
checkpoints load without renaming.
"""

from __future__ import annotations

from torch import Tensor, nn


class ChannelAttention(nn.Module):
    """RCAN channel attention (squeeze-and-excitation): ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    Args:
        channels: C.
        reduction: bottleneck ratio; the hidden width is ``C // reduction`` (at least 1).

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W); the per-channel weights
    (:meth:`weights`) are (B, C, 1, 1) in (0, 1).
    """

    def __init__(self, *, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def descriptor(self, x: Tensor) -> Tensor:
        """The squeezed statistic: the channel means, (B, C, 1, 1)."""
        return x.mean(dim=(2, 3), keepdim=True)

    def weights(self, x: Tensor) -> Tensor:
        """Per-channel gates (B, C, 1, 1) in (0, 1)."""
        return self.conv_du(self.descriptor(x))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class ContrastChannelAttention(ChannelAttention):
    """IMDN contrast-aware channel attention: the squeezed statistic is
    ``std(x) + mean(x)`` over H, W (population std) instead of the mean alone.

    Shapes as :class:`ChannelAttention`.
    """

    def descriptor(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        # IMDN computes sqrt(mean((x - mean)^2)), i.e. the biased (population) std.
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return std + mean
