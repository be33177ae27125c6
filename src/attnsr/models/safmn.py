"""``safmn``: SAFMN, the spatially-adaptive feature modulation network (Sun et al., ICCV
2023, ``sunny2109/SAFMN``).

A 3x3 conv lifts the image to ``dim`` features; ``n_blocks`` blocks each apply
``x + SAFM(LN(x))`` (multi-scale feature modulation, :class:`~attnsr.layers.modulation.SAFM`)
and ``x + CCM(LN(x))`` (convolutional channel mixer: 3x3 conv to ``ffn_scale * dim``,
GELU, 1x1 conv back); a global skip, then one 3x3 conv and a pixel shuffle. Inputs and
outputs are in [0, 1] (BasicSR).

``safmn`` (36 x 8, ~0.24M at x4) and ``safmn_l`` (128 x 16) are the paper's models.
``safmn_ntire`` is the NTIRE 2023 efficient-SR entry whose weights the authors commit
(``NTIRE2023_ESR/model_zoo/team15_SAFMN.pth``): no layer norms, bias-free SAFM/CCM, a GRN
after the first conv, SAFM pooling one octave coarser, no feature skip, and a bilinear
upscaled copy of the input added to the output (config ``ntire=True``).

Keys: ``to_feat``, ``feats.<i>.{norm1,norm2,safm.mfr.<l>,safm.aggr,ccm.ccm.0,ccm.ccm.2}``,
``to_img.0``, and ``norm.{gamma,beta}`` (NTIRE), as the official code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.modulation import GRN, SAFM, LayerNorm2d
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"dim": 8, "n_blocks": 2}


@dataclass(frozen=True, kw_only=True)
class SAFMNConfig:
    scale: int = 4
    in_channels: int = 3
    dim: int = 36
    n_blocks: int = 8
    ffn_scale: float = 2.0
    n_levels: int = 4
    ntire: bool = False  # the NTIRE 2023 challenge variant (see the module docstring)

    def __post_init__(self) -> None:
        if min(self.dim, self.n_blocks, self.n_levels, self.scale) < 1:
            raise ValueError("dim, n_blocks, n_levels and scale must be >= 1")
        if self.dim % self.n_levels:
            raise ValueError(f"dim {self.dim} is not a multiple of n_levels {self.n_levels}")
        if int(self.dim * self.ffn_scale) < 1:
            raise ValueError("ffn_scale * dim must be >= 1")


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 conv (C -> hidden), GELU, 1x1 conv (hidden -> C).
    Shapes: (B, C, H, W) -> (B, C, H, W). Keys ``ccm.0``, ``ccm.2``."""

    def __init__(self, *, channels: int, hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.ccm = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, bias=bias),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 1, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    """``x + SAFM(norm1(x))`` then ``x + CCM(norm2(x))`` (no norms in the NTIRE variant).
    Shapes: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, *, dim: int, hidden: int, n_levels: int, ntire: bool) -> None:
        super().__init__()
        if not ntire:
            self.norm1 = LayerNorm2d(dim)
            self.norm2 = LayerNorm2d(dim)
        self.safm = SAFM(channels=dim, n_levels=n_levels, pool_offset=int(ntire), bias=not ntire)
        self.ccm = CCM(channels=dim, hidden=hidden, bias=not ntire)
        self.ntire = ntire

    def forward(self, x: Tensor) -> Tensor:
        if self.ntire:
            x = self.safm(x) + x
            return self.ccm(x) + x
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


def _detect_safmn(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """SAFMN config from official keys, or None."""
    needed = ("to_feat.weight", "feats.0.safm.aggr.weight", "feats.0.ccm.ccm.0.weight",
              "to_img.0.weight")
    if any(k not in sd for k in needed):
        return None
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"feats\.(\d+)\.", k))}
    levels = {int(m.group(1)) for k in sd if (m := re.match(r"feats\.0\.safm\.mfr\.(\d+)\.", k))}
    dim, in_ch = (int(n) for n in sd["to_feat.weight"].shape[:2])
    out = int(sd["to_img.0.weight"].shape[0])
    scale = round((out / in_ch) ** 0.5)
    if scale * scale * in_ch != out or not levels:
        return None
    return {"scale": scale, "in_channels": in_ch, "dim": dim, "n_blocks": len(blocks),
            "ffn_scale": int(sd["feats.0.ccm.ccm.0.weight"].shape[0]) / dim,
            "n_levels": len(levels), "ntire": "norm.gamma" in sd}


@register_arch("safmn", SAFMNConfig, tiny=TINY, detect=_detect_safmn)
class SAFMN(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C, sH, sW), about [0, 1]; H, W >= 8 (16 NTIRE)."""

    def __init__(self, config: SAFMNConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.dim, config.scale
        if config.ntire:
            self.norm = GRN(c)
        self.to_feat = nn.Conv2d(config.in_channels, c, 3, padding=1)
        self.feats = nn.Sequential(*(
            AttBlock(dim=c, hidden=int(c * config.ffn_scale), n_levels=config.n_levels,
                     ntire=config.ntire)
            for _ in range(config.n_blocks)
        ))
        self.to_img = nn.Sequential(
            nn.Conv2d(c, config.in_channels * s * s, 3, padding=1), nn.PixelShuffle(s)
        )

    def forward(self, lr: Tensor) -> Tensor:
        x = self.to_feat(lr)
        if not self.config.ntire:
            return self.to_img(self.feats(x) + x)
        ident = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.norm(x))) + ident

    def traits(self) -> ModelTraits:
        # Adaptive pooling bins (and GRN's norms) depend on the image size: tiling is
        # approximate. Locally each block reaches about 1.5 bins of the coarsest level.
        coarsest = 2 ** (self.config.n_levels - 1 + int(self.config.ntire))
        return ModelTraits(
            min_size=coarsest, has_global_ops=True,
            receptive_field=(3 * coarsest + 1) * self.config.n_blocks + 2,
        )


register_preset(
    "safmn", "safmn",
    description="SAFMN (ICCV 2023): spatially-adaptive feature modulation, 36 ch x 8 blocks "
                "(~0.24M)",
    scales=(2, 3, 4),
    dim=36, n_blocks=8,
)
register_preset(
    "safmn_l", "safmn",
    description="SAFMN-L (ICCV 2023, classic SR): 128 ch x 16 blocks (~5.6M)",
    scales=(2, 3, 4),
    dim=128, n_blocks=16,
)
register_preset(
    "safmn_ntire", "safmn",
    description="SAFMN NTIRE-2023 ESR entry (GRN, bias-free, bilinear skip); official x4 weights",
    scales=(4,),
    dim=36, n_blocks=8, ntire=True,
)
