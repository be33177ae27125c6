"""Re-parameterisable convolutions: trained as several branches, run as one conv.

:class:`Conv3XC` is SPAN's (Wan et al. 2024) 3x3 convolution. In training it is a 1x1
skip plus an expanded 1x1 -> 3x3 -> 1x1 chain; all of it is linear, so for inference
the branches collapse exactly into a single 3x3 convolution (the authors' ``eval_conv``).

Keys match the official layouts: the training form stores ``sk`` and ``conv.{0,1,2}``
(the authors' training checkpoints also carry ``eval_conv``, a copy they recompute from
the branches on every evaluation forward: the SPAN converter drops it); the fused form
stores ``eval_conv`` only (the NTIRE 2024 challenge checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fuse_conv3xc(
    sk: nn.Conv2d, conv0: nn.Conv2d, conv1: nn.Conv2d, conv2: nn.Conv2d
) -> tuple[Tensor, Tensor]:
    """The single 3x3 kernel equal to ``conv2(conv1(conv0(pad(x)))) + sk(x)``.

    Args:
        sk: 1x1 skip, weight (O, I, 1, 1).
        conv0: 1x1 expansion, weight (gI, I, 1, 1).
        conv1: 3x3 without padding, weight (gO, gI, 3, 3).
        conv2: 1x1 projection, weight (O, gO, 1, 1).

    Returns:
        ``(weight (O, I, 3, 3), bias (O,))`` for a 3x3 conv with zero padding 1. Exact in
        real arithmetic, also at the borders: the training path pads *before* conv0, so a
        padded pixel reaches conv1 as conv0's bias, which the fused bias accounts for.
    """
    w0 = conv0.weight[:, :, 0, 0]  # gI, I
    w2 = conv2.weight[:, :, 0, 0]  # O, gO
    w01 = torch.einsum("omyx,mi->oiyx", conv1.weight, w0)  # gO, I, 3, 3
    b01 = conv1.bias + torch.einsum("omyx,m->o", conv1.weight, conv0.bias)  # gO
    weight = torch.einsum("po,oiyx->piyx", w2, w01)  # O, I, 3, 3
    bias = conv2.bias + w2 @ b01  # O
    weight = weight + F.pad(sk.weight, (1, 1, 1, 1))  # the 1x1 skip sits at the centre tap
    return weight, bias + sk.bias


class Conv3XC(nn.Module):
    """SPAN's re-parameterisable 3x3 convolution.

    Args:
        in_channels: I.
        out_channels: O.
        gain: expansion of the inner 3x3 conv (gI -> gO channels; SPAN: 2).
        fused: True builds the inference form only (one 3x3 conv, key ``eval_conv``);
            False the training form (keys ``sk``, ``conv.0``, ``conv.1``, ``conv.2``).

    Shapes: (B, I, H, W) -> (B, O, H, W). The training form runs its branches in training
    mode and the fused kernel (:meth:`fused_weights`, recomputed per call, as the authors
    do) in eval mode; both give the same output up to float rounding.
    """

    def __init__(self, *, in_channels: int, out_channels: int, gain: int = 2,
                 fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.eval_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            return
        self.sk = nn.Conv2d(in_channels, out_channels, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels * gain, 1),
            nn.Conv2d(in_channels * gain, out_channels * gain, 3),  # no padding: x is padded
            nn.Conv2d(out_channels * gain, out_channels, 1),
        )

    def fused_weights(self) -> tuple[Tensor, Tensor]:
        """``(weight (O, I, 3, 3), bias (O,))`` of the equivalent single 3x3 conv."""
        if self.fused:
            return self.eval_conv.weight, self.eval_conv.bias
        return fuse_conv3xc(self.sk, self.conv[0], self.conv[1], self.conv[2])

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        weight, bias = self.fused_weights()
        return F.conv2d(x, weight, bias, padding=1)
