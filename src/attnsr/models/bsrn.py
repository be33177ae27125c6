"""``bsrn``: BSRN, the blueprint separable residual network (Li et al., NTIRE 2022
workshop; ``xiaom233/BSRN``), and BSRN-S, its NTIRE 2022 efficient-SR challenge entry.

The input is repeated four times along the channels and lifted by a BSConv-U
(:class:`~attnsr.layers.blueprint.BSConvU`). ``n_blocks`` efficient separable distillation
blocks (ESDB) follow: three BSConv-U residual steps, each distilling half the channels
through a 1x1 conv (GELU), a fourth BSConv-U, a 1x1 fusion, then enhanced spatial
attention (:class:`~attnsr.layers.blueprint.BlueprintESA`) and contrast-aware channel
attention (:class:`~attnsr.layers.channel.ContrastChannelAttention`), with a block skip.
The outputs of all blocks are concatenated, fused by a 1x1 conv + GELU and a BSConv-U,
added to the first features and upsampled by one 3x3 conv + pixel shuffle. [0, 1] in and
out (BasicSR).

``bsrn`` is the paper model (64 features, 8 blocks, ~0.35M; official x2/x3/x4 weights).
``bsrn_s`` is the challenge model (official ``RFDNFINALB5``: 48 features, 5 blocks,
~0.16M, x4 weights; config ``s_variant=True``): its 1x1 convs are ``nn.Linear`` with
biases, ESA's strided conv is a plain conv, and a learned per-channel scale ``cw`` and a
1x1 ``conv_out`` replace the channel attention.

Keys (both as the official checkpoints): ``fea_conv.{pw,dw}``,
``B<i>.{c1_d,c1_r,c2_d,c2_r,c3_d,c3_r,c4,c5,esa.*,cca.conv_du.{0,2}|cw,conv_out}``,
``c1``, ``c2.{pw,dw}``, ``upsampler.upsampleOneStep.0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.blueprint import BLUEPRINT_ESA_MIN_SIZE, BlueprintESA, BSConvU, pointwise
from attnsr.layers.channel import ContrastChannelAttention
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"feature_channels": 32, "n_blocks": 2}


@dataclass(frozen=True, kw_only=True)
class BSRNConfig:
    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    feature_channels: int = 64
    n_blocks: int = 8
    s_variant: bool = False  # BSRN-S (official RFDNFINALB5), see the module docstring

    def __post_init__(self) -> None:
        if min(self.feature_channels, self.n_blocks, self.scale) < 1:
            raise ValueError("feature_channels, n_blocks and scale must be >= 1")
        if self.feature_channels % 4:
            raise ValueError(f"feature_channels {self.feature_channels} must be a multiple of 4")


class ESDB(nn.Module):
    """Efficient separable distillation block (BSRN) or BSRN-S's block (``linear``).

    Shapes: (B, C, H, W) -> (B, C, H, W), H, W >= 15.
    """

    def __init__(self, *, channels: int, linear: bool) -> None:
        super().__init__()
        c, dc = channels, channels // 2
        self.linear = linear
        self.c1_d = pointwise(c, dc, linear=linear)
        self.c1_r = BSConvU(c, c, linear=linear)
        self.c2_d = pointwise(c, dc, linear=linear)
        self.c2_r = BSConvU(c, c, linear=linear)
        self.c3_d = pointwise(c, dc, linear=linear)
        self.c3_r = BSConvU(c, c, linear=linear)
        self.c4 = BSConvU(c, dc, linear=linear)
        self.c5 = pointwise(dc * 4, c, linear=linear)
        self.esa = BlueprintESA(channels=c, esa_channels=c // 4, linear=linear)
        if linear:  # BSRN-S: per-channel scale and a 1x1 conv instead of CCA
            self.cw = nn.Parameter(nn.init.normal_(torch.empty(1, c), mean=1.0, std=0.2))
            self.conv_out = pointwise(c, c, linear=True)
        else:
            self.cca = ContrastChannelAttention(channels=c, reduction=16)

    def forward(self, x: Tensor) -> Tensor:
        d1 = F.gelu(self.c1_d(x))
        r1 = F.gelu(self.c1_r(x) + x)
        d2 = F.gelu(self.c2_d(r1))
        r2 = F.gelu(self.c2_r(r1) + r1)
        d3 = F.gelu(self.c3_d(r2))
        r3 = F.gelu(self.c3_r(r2) + r2)
        r4 = F.gelu(self.c4(r3))
        out = self.esa(self.c5(torch.cat([d1, d2, d3, r4], dim=1)))  # B, C, H, W
        if self.linear:
            return self.conv_out(out * self.cw[:, :, None, None]) + x
        return self.cca(out) + x


class _Upsampler(nn.Module):
    """Official ``PixelShuffleDirect``: keys ``upsampleOneStep.0``. (B, C, H, W) ->
    (B, C_out, sH, sW)."""

    def __init__(self, *, scale: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(in_channels, out_channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.upsampleOneStep(x)


def _detect_bsrn(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """BSRN / BSRN-S config from official keys, or None."""
    needed = ("fea_conv.pw.weight", "fea_conv.dw.weight", "B1.c1_r.pw.weight",
              "B1.esa.conv_max.dw.weight", "c1.weight", "c2.dw.weight",
              "upsampler.upsampleOneStep.0.weight")
    if any(k not in sd for k in needed):
        return None
    s_variant = "B1.cw" in sd
    if not s_variant and "B1.cca.conv_du.0.weight" not in sd:
        return None
    n = len({int(m.group(1)) for k in sd if (m := re.match(r"B(\d+)\.", k))})
    feats, in4 = (int(v) for v in sd["fea_conv.pw.weight"].shape[:2])
    up = sd["upsampler.upsampleOneStep.0.weight"]
    out_ch_s2 = int(up.shape[0])
    for out_ch in (3, 1, in4 // 4):
        scale = round((out_ch_s2 / out_ch) ** 0.5)
        if scale * scale * out_ch == out_ch_s2:
            break
    else:
        return None
    return {"scale": scale, "in_channels": in4 // 4, "out_channels": out_ch,
            "feature_channels": feats, "n_blocks": n, "s_variant": s_variant}


@register_arch("bsrn", BSRNConfig, tiny=TINY, detect=_detect_bsrn)
class BSRN(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C_out, sH, sW), about [0, 1]; H, W >= 15."""

    def __init__(self, config: BSRNConfig) -> None:
        super().__init__()
        self.config = config
        c, lin = config.feature_channels, config.s_variant
        self.fea_conv = BSConvU(config.in_channels * 4, c, linear=lin)
        for i in range(1, config.n_blocks + 1):  # official names B1..Bn
            self.add_module(f"B{i}", ESDB(channels=c, linear=lin))
        self.c1 = pointwise(c * config.n_blocks, c, linear=lin)
        self.c2 = BSConvU(c, c, linear=lin)
        self.upsampler = _Upsampler(scale=config.scale, in_channels=c,
                                    out_channels=config.out_channels)

    def forward(self, lr: Tensor) -> Tensor:
        fea = self.fea_conv(torch.cat([lr, lr, lr, lr], dim=1))
        outs, x = [], fea
        for i in range(1, self.config.n_blocks + 1):
            x = getattr(self, f"B{i}")(x)
            outs.append(x)
        trunk = F.gelu(self.c1(torch.cat(outs, dim=1)))
        return self.upsampler(self.c2(trunk) + fea)

    def traits(self) -> ModelTraits:
        # Per block: four 3x3 convs plus ESA's strided, pooled branch (~30 LR pixels).
        # BSRN's contrast-aware channel attention pools the whole map (global).
        return ModelTraits(receptive_field=34 * self.config.n_blocks + 3,
                           min_size=BLUEPRINT_ESA_MIN_SIZE,
                           has_global_ops=not self.config.s_variant)


register_preset(
    "bsrn", "bsrn",
    description="BSRN (NTIRE 2022 wkshp): blueprint separable convs + ESA/CCA, "
                "64 feats x 8 blocks (~0.35M)",
    scales=(2, 3, 4),
    feature_channels=64, n_blocks=8,
)
register_preset(
    "bsrn_s", "bsrn",
    description="BSRN-S (NTIRE 2022 ESR, 1st in model complexity): 48 feats x 5 blocks "
                "(~0.16M)",
    scales=(4,),
    feature_channels=48, n_blocks=5, s_variant=True,
)
