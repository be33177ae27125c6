"""``imdn``: IMDN, the information multi-distillation network (Hui et al. 2019).

Six IMD modules (progressive channel splitting, contrast-aware channel attention,
1x1 fusion), a concatenation of all module outputs, and a one-step pixel-shuffle
upsampler. Works on [0, 1] like the official ``Zheng222/IMDN`` code. Keys match the
official checkpoints: ``fea_conv``, ``IMDB1..N.{c1,c2,c3,c4,c5,cca.conv_du.{0,2}}``,
``c.0``, ``LR_conv``, ``upsampler.0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.layers.channel import ContrastChannelAttention
from attnsr.layers.upsample import UpsampleOneStep, detect_one_step_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"nf": 24, "num_modules": 2, "reduction": 2}


@dataclass(frozen=True, kw_only=True)
class IMDNConfig:
    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    nf: int = 64
    num_modules: int = 6
    reduction: int = 16

    def __post_init__(self) -> None:
        if self.nf % 4 or self.nf < 4 or self.num_modules < 1 or self.scale < 1:
            raise ValueError("nf must be a positive multiple of 4; num_modules, scale >= 1")


class IMDModule(nn.Module):
    """Information multi-distillation: three 3x3 convs each keep a quarter of their
    channels (distilled) and pass the rest on; the four distilled parts are gated by
    contrast-aware channel attention and fused by a 1x1 conv, plus a skip.

    Shapes: (B, C, H, W) -> (B, C, H, W), C divisible by 4.
    """

    def __init__(self, *, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.distilled = channels // 4
        self.remaining = channels - self.distilled
        d, r = self.distilled, self.remaining
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(r, channels, 3, padding=1)
        self.c3 = nn.Conv2d(r, channels, 3, padding=1)
        self.c4 = nn.Conv2d(r, d, 3, padding=1)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = nn.Conv2d(d * 4, channels, 1)
        self.cca = ContrastChannelAttention(channels=d * 4, reduction=reduction)

    def forward(self, x: Tensor) -> Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        d4 = self.c4(r3)
        return x + self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1)))


def _detect_imdn(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """IMDN config from official keys, or None."""
    needed = ("fea_conv.weight", "IMDB1.c1.weight", "IMDB1.cca.conv_du.0.weight",
              "c.0.weight", "LR_conv.weight", "upsampler.0.weight")
    if any(k not in sd for k in needed):
        return None
    n = 0
    while f"IMDB{n + 1}.c1.weight" in sd:
        n += 1
    nf = int(sd["fea_conv.weight"].shape[0])
    out_ch = 3
    scale = detect_one_step_scale(sd, "upsampler.0.weight", out_ch)
    if scale is None:
        return None
    return {"scale": scale, "in_channels": int(sd["fea_conv.weight"].shape[1]),
            "out_channels": out_ch, "nf": nf, "num_modules": n,
            "reduction": nf // int(sd["IMDB1.cca.conv_du.0.weight"].shape[0])}


@register_arch("imdn", IMDNConfig, tiny=TINY, detect=_detect_imdn)
class IMDN(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C_out, sH, sW), about [0, 1]."""

    def __init__(self, config: IMDNConfig) -> None:
        super().__init__()
        self.config = config
        nf, n = config.nf, config.num_modules
        self.fea_conv = nn.Conv2d(config.in_channels, nf, 3, padding=1)
        for i in range(1, n + 1):  # official names IMDB1..IMDBn
            self.add_module(f"IMDB{i}", IMDModule(channels=nf, reduction=config.reduction))
        self.c = nn.Sequential(nn.Conv2d(nf * n, nf, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = UpsampleOneStep(scale=config.scale, in_channels=nf,
                                         out_channels=config.out_channels)

    def forward(self, lr: Tensor) -> Tensor:
        fea = self.fea_conv(lr)
        outs, x = [], fea
        for i in range(1, self.config.num_modules + 1):
            x = getattr(self, f"IMDB{i}")(x)
            outs.append(x)
        x = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(x)

    def traits(self) -> ModelTraits:
        # 3x3 convs: fea_conv, 4 per module, LR_conv, upsampler; CCA pools globally.
        rf = 4 * self.config.num_modules + 3
        return ModelTraits(receptive_field=rf, has_global_ops=True, fp16_safe=True)


register_preset(
    "imdn", "imdn",
    description="IMDN: information multi-distillation + contrast channel attention (~0.7M)",
    scales=(2, 3, 4),
    nf=64, num_modules=6,
)
