"""``rlfn``: RLFN, the residual local feature network (Kong et al. 2022, NTIRE 2022
efficient SR winner), with enhanced spatial attention (ESA) in every block.

``rlfn_ntire`` is the challenge model whose weights ``bytedance/RLFN`` publishes
(``rlfn_ntire_x4.pth``: 46 features, 48 mid channels, 4 blocks); ``rlfn`` and
``rlfn_s`` are the paper's variants (52 / 48 features, 6 blocks). The official test code
feeds [0, 255] images (``uint2tensor4(...) * 255``) and divides the output by 255; this
module takes [0, 1] and does the same scaling inside (``rgb_range``).

Keys: ``conv_1``, ``block_<i>.{c1_r,c2_r,c3_r,c5,esa.*}``, ``conv_2``, ``upsampler.0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from attnsr.layers.esa import ESA, ESA_MIN_SIZE
from attnsr.layers.upsample import UpsampleOneStep, detect_one_step_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"feature_channels": 8, "mid_channels": 8, "n_blocks": 2, "esa_channels": 4}


@dataclass(frozen=True, kw_only=True)
class RLFNConfig:
    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    feature_channels: int = 52
    mid_channels: int | None = None  # None: same as feature_channels
    n_blocks: int = 6
    esa_channels: int = 16
    rgb_range: float = 255.0

    def __post_init__(self) -> None:
        if min(self.feature_channels, self.n_blocks, self.esa_channels, self.scale) < 1:
            raise ValueError("feature_channels, n_blocks, esa_channels and scale must be >= 1")


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 conv + LeakyReLU(0.05) with a skip, a 1x1
    conv, then ESA. Shapes: (B, C, H, W) -> (B, C, H, W), H, W >= 15."""

    def __init__(self, *, channels: int, mid_channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels=channels, esa_channels=esa_channels)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.c3_r(self.act(self.c2_r(self.act(self.c1_r(x))))))
        return self.esa(self.c5(out + x))


def _detect_rlfn(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """RLFN config from official keys, or None."""
    needed = ("conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv1.weight",
              "conv_2.weight", "upsampler.0.weight")
    if any(k not in sd for k in needed):
        return None
    n = 0
    while f"block_{n + 1}.c1_r.weight" in sd:
        n += 1
    scale = detect_one_step_scale(sd, "upsampler.0.weight", 3)
    if scale is None:
        return None
    feats = int(sd["conv_1.weight"].shape[0])
    mid = int(sd["block_1.c1_r.weight"].shape[0])
    return {"scale": scale, "in_channels": int(sd["conv_1.weight"].shape[1]),
            "feature_channels": feats, "mid_channels": None if mid == feats else mid,
            "n_blocks": n, "esa_channels": int(sd["block_1.esa.conv1.weight"].shape[0])}


@register_arch("rlfn", RLFNConfig, tiny=TINY, detect=_detect_rlfn)
class RLFN(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C_out, sH, sW), about [0, 1]."""

    def __init__(self, config: RLFNConfig) -> None:
        super().__init__()
        self.config = config
        c = config.feature_channels
        mid = config.mid_channels or c
        self.conv_1 = nn.Conv2d(config.in_channels, c, 3, padding=1)
        for i in range(1, config.n_blocks + 1):  # official names block_1..block_n
            self.add_module(f"block_{i}", RLFB(channels=c, mid_channels=mid,
                                                esa_channels=config.esa_channels))
        self.conv_2 = nn.Conv2d(c, c, 3, padding=1)
        self.upsampler = UpsampleOneStep(scale=config.scale, in_channels=c,
                                         out_channels=config.out_channels)

    def forward(self, lr: Tensor) -> Tensor:
        fea = self.conv_1(lr * self.config.rgb_range)
        x = fea
        for i in range(1, self.config.n_blocks + 1):
            x = getattr(self, f"block_{i}")(x)
        return self.upsampler(self.conv_2(x) + fea) / self.config.rgb_range

    def traits(self) -> ModelTraits:
        # Per block: 3 convs plus ESA's strided/pooled branch (about 17 LR pixels).
        return ModelTraits(receptive_field=20 * self.config.n_blocks + 3, min_size=ESA_MIN_SIZE)


register_preset(
    "rlfn", "rlfn",
    description="RLFN (paper): residual local features + ESA, 52 feats x 6 blocks (~0.54M)",
    scales=(2, 3, 4),
    feature_channels=52, n_blocks=6,
)
register_preset(
    "rlfn_s", "rlfn",
    description="RLFN-S (official rlfn_s.py): 48 feats x 6 blocks",
    scales=(2, 3, 4),
    feature_channels=48, n_blocks=6,
)
register_preset(
    "rlfn_ntire", "rlfn",
    description="RLFN NTIRE-2022 challenge model (46 feats, 48 mid, 4 blocks); official x4 weights",
    scales=(2, 3, 4),
    feature_channels=46, mid_channels=48, n_blocks=4,
)
