"""``pan``: PAN, the pixel-attention network (Zhao et al. 2020, ECCV-W AIM).

SCPA blocks (self-calibrated convolution with pixel attention) on LR features, then a
nearest-neighbour upsampling path with a pixel-attention gate per stage (U-PA); the
bilinear-upsampled input is added to the output. Works on [0, 1] like the official
``zhaohengyuan1/PAN`` code (no rescaling). Keys match the official checkpoints:
``conv_first``, ``SCPA_trunk.<i>.{conv1_a,conv1_b,k1.0,PAConv.k2/k3/k4,conv3}``,
``trunk_conv``, ``upconv1``, ``att1.conv``, ``HRconv1``, (x4: ``upconv2``, ``att2``,
``HRconv2``), ``conv_last``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.pixel import PAConv, PixelAttention
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"nf": 8, "unf": 6, "nb": 2}


@dataclass(frozen=True, kw_only=True)
class PANConfig:
    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    nf: int = 40
    unf: int = 24
    nb: int = 16

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ValueError(f"PAN supports scales 2, 3, 4, not {self.scale}")
        if self.nf % 2 or min(self.nf, self.unf, self.nb) < 1:
            raise ValueError("nf must be even; nf, unf, nb positive")


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: two half-width branches (plain 3x3,
    and :class:`PAConv`), a 1x1 fusion and a skip. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1_a = nn.Conv2d(channels, half, 1, bias=False)
        self.conv1_b = nn.Conv2d(channels, half, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False))
        self.PAConv = PAConv(channels=half)
        self.conv3 = nn.Conv2d(half * 2, channels, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return x + self.conv3(torch.cat([a, b], dim=1))


def _detect_pan(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """PAN config from official keys. x2 and x3 checkpoints have identical shapes, so
    the scale is only known for x4 (``upconv2`` present); otherwise it is left out."""
    needed = ("conv_first.weight", "SCPA_trunk.0.conv1_a.weight", "trunk_conv.weight",
              "att1.conv.weight", "conv_last.weight")
    if any(k not in sd for k in needed):
        return None
    nb = 0
    while f"SCPA_trunk.{nb}.conv1_a.weight" in sd:
        nb += 1
    cfg: dict[str, Any] = {
        "in_channels": int(sd["conv_first.weight"].shape[1]),
        "out_channels": int(sd["conv_last.weight"].shape[0]),
        "nf": int(sd["conv_first.weight"].shape[0]),
        "unf": int(sd["upconv1.weight"].shape[0]),
        "nb": nb,
    }
    if "upconv2.weight" in sd:
        cfg["scale"] = 4
    return cfg


@register_arch("pan", PANConfig, tiny=TINY, detect=_detect_pan)
class PAN(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C_out, sH, sW), about [0, 1]."""

    def __init__(self, config: PANConfig) -> None:
        super().__init__()
        self.config = config
        nf, unf = config.nf, config.unf
        self.conv_first = nn.Conv2d(config.in_channels, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*(SCPA(channels=nf) for _ in range(config.nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PixelAttention(channels=unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if config.scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PixelAttention(channels=unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, config.out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)

    def _stage(self, fea: Tensor, factor: int, upconv: nn.Module, att: nn.Module,
               hrconv: nn.Module) -> Tensor:
        """One U-PA stage: nearest x``factor`` -> conv -> PA -> lrelu -> conv -> lrelu."""
        fea = upconv(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        return self.lrelu(hrconv(self.lrelu(att(fea))))

    def forward(self, lr: Tensor) -> Tensor:
        fea = self.conv_first(lr)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        s = self.config.scale
        fea = self._stage(fea, 2 if s == 4 else s, self.upconv1, self.att1, self.HRconv1)
        if s == 4:
            fea = self._stage(fea, 2, self.upconv2, self.att2, self.HRconv2)
        base = F.interpolate(lr, scale_factor=s, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + base

    def traits(self) -> ModelTraits:
        # LR 3x3 convs: conv_first, 2 per SCPA (k3, k4 on the PA branch), trunk_conv,
        # upconv1; the HR convs add about one more LR pixel.
        return ModelTraits(receptive_field=2 * self.config.nb + 4, fp16_safe=True)


register_preset(
    "pan", "pan",
    description="PAN: pixel attention, 16 SCPA blocks, 40/24 feats (lightweight, ~0.27M)",
    scales=(2, 3, 4),
    nf=40, unf=24, nb=16,
)
