"""Blueprint separable convolutions (BSConv-U, Haase & Amthor CVPR 2020) and the
enhanced spatial attention built from them in BSRN (Li et al., NTIRE 2022).

BSConv-U factors a ``k x k`` convolution the other way round from a depth-wise separable
one: a 1x1 *point-wise* conv mixes channels first, then a ``k x k`` *depth-wise* conv
filters each output channel spatially (a "blueprint" kernel per channel, scaled by the
point-wise weights). ``C_in * C_out + k^2 * C_out`` weights instead of ``k^2 C_in C_out``.

BSRN-S (the challenge model) writes its 1x1 convolutions as ``nn.Linear`` over
channels-last features; :class:`Linear1x1` keeps that layout (weights ``(out, in)``) so
both official checkpoints load without renaming.

:class:`BlueprintESA` is RFDN's full ESA (with ``conv_max`` and ``conv3_``), GELU instead
of ReLU, and its 3x3 convs as BSConv-U -- a different computation from RLFN's trimmed
:class:`~attnsr.layers.esa.ESA`, hence its own class. BSRN's contrast-aware channel
attention is :class:`~attnsr.layers.channel.ContrastChannelAttention` unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Smallest input side of BlueprintESA: a 3x3 stride-2 conv without padding, then a 7x7
# max-pool with stride 3.
BLUEPRINT_ESA_MIN_SIZE = 15


class Linear1x1(nn.Linear):
    """A 1x1 convolution stored as ``nn.Linear`` (BSRN-S): applied over the channels of
    an NCHW map. Shapes: (B, C_in, H, W) -> (B, C_out, H, W). Keys ``weight`` (out, in),
    ``bias`` (out,)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)


def pointwise(in_channels: int, out_channels: int, *, linear: bool, bias: bool = True) -> nn.Module:
    """A 1x1 conv: ``nn.Conv2d`` (weights (out, in, 1, 1)) or :class:`Linear1x1`
    (weights (out, in); always with a bias, as BSRN-S)."""
    if linear:
        return Linear1x1(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class BSConvU(nn.Module):
    """Unconstrained blueprint separable conv: 1x1 point-wise (no bias unless ``linear``)
    then ``k x k`` depth-wise with bias.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size, stride, padding: of the depth-wise conv.
        linear: point-wise as :class:`Linear1x1` with a bias (BSRN-S).

    Shapes: (B, C_in, H, W) -> (B, C_out, H', W') (H' = H at stride 1, padding k // 2).
    Keys ``pw.weight``, ``dw.weight`` (C_out, 1, k, k), ``dw.bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.pw = pointwise(in_channels, out_channels, linear=linear, bias=False)
        self.dw = nn.Conv2d(out_channels, out_channels, kernel_size, stride=stride,
                            padding=padding, groups=out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.dw(self.pw(x))


class BlueprintESA(nn.Module):
    """Enhanced spatial attention of BSRN (RFDN's ESA with BSConv-U and GELU).

    ``c1_ = conv1(x)``; a stride-2 conv, a 7x7/3 max-pool and three BSConv-U
    (``conv_max``, GELU, ``conv3``, GELU, ``conv3_``) estimate a coarse map, upsampled
    bilinearly and added to ``conv_f(c1_)``; ``conv4`` + sigmoid give the gate.

    Args:
        channels: C.
        esa_channels: inner width (BSRN: ``C // 4``).
        linear: 1x1 convs as :class:`Linear1x1` and a plain strided ``conv2`` (BSRN-S);
            else ``conv2`` is a BSConv-U with stride 2 (BSRN).

    Shapes: ``x`` (B, C, H, W) with H, W >= 15 -> (B, C, H, W); the gate
    (:meth:`weights`) is (B, C, H, W) in (0, 1).
    """

    def __init__(self, *, channels: int, esa_channels: int, linear: bool = False) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = pointwise(channels, f, linear=linear)
        self.conv_f = pointwise(f, f, linear=linear)
        self.conv_max = BSConvU(f, f, linear=linear)
        if linear:
            self.conv2: nn.Module = nn.Conv2d(f, f, 3, stride=2, padding=0)
        else:
            self.conv2 = BSConvU(f, f, stride=2, padding=0)
        self.conv3 = BSConvU(f, f, linear=linear)
        self.conv3_ = BSConvU(f, f, linear=linear)
        self.conv4 = pointwise(f, channels, linear=linear)

    def weights(self, x: Tensor) -> Tensor:
        """The gate (B, C, H, W) in (0, 1)."""
        c1_ = self.conv1(x)  # B, f, H, W
        c1 = self.conv2(c1_)  # B, f, (H-3)//2+1, (W-3)//2+1
        v = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = self.conv3_(F.gelu(self.conv3(F.gelu(self.conv_max(v)))))
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)
