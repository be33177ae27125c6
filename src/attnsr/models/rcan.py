"""``rcan``: RCAN (Zhang et al. 2018), residual-in-residual with channel attention.

Residual groups of residual channel-attention blocks (RCAB: conv-ReLU-conv then a
squeeze-excitation gate). Key names follow the official ``yulunzhang/RCAN`` code, so
official ``RCAN_BIX{2,3,4,8}.pt`` files load strictly:
``sub_mean``, ``head.0``, ``body.<g>.body.<b>.body.{0,2}`` (convs),
``body.<g>.body.<b>.body.3.conv_du.{0,2}`` (channel attention), ``body.<g>.body.<n>``,
``body.<G>``, ``tail.0.*`` (upsampler), ``tail.1``, ``add_mean``.

The official code works on [0, 255] with a mean shift; this module takes [0, 1], scales
by ``rgb_range`` and divides at the end. In the official code the mean-shift convs
are (unintentionally) trainable parameters: they are here too, and they count in the
published 15.59M parameters (x4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from attnsr.layers.channel import ChannelAttention
from attnsr.layers.upsample import Upsample, detect_upsample_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.edsr import DIV2K_MEAN, MeanShift
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4}


@dataclass(frozen=True, kw_only=True)
class RCANConfig:
    scale: int = 4
    in_channels: int = 3
    n_resgroups: int = 10
    n_resblocks: int = 20
    n_feats: int = 64
    reduction: int = 16
    rgb_range: float = 255.0
    rgb_mean: tuple[float, float, float] = DIV2K_MEAN

    def __post_init__(self) -> None:
        if self.in_channels != 3:
            raise ValueError("RCAN's mean shift needs in_channels=3")
        if min(self.n_resgroups, self.n_resblocks, self.n_feats, self.reduction) < 1:
            raise ValueError("n_resgroups, n_resblocks, n_feats and reduction must be positive")


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + CA(conv(relu(conv(x))))``, (B, C, H, W)."""

    def __init__(self, *, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels=channels, reduction=reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``n_blocks`` RCABs and a conv, with a skip: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, *, channels: int, reduction: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *(RCAB(channels=channels, reduction=reduction) for _ in range(n_blocks)),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _detect_rcan(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """RCAN config from official keys, or None if the keys are not RCAN's."""
    ca = "body.0.body.0.body.3.conv_du.0.weight"
    if any(k not in sd for k in ("sub_mean.weight", "head.0.weight", ca, "tail.1.weight")):
        return None
    groups = 0
    while f"body.{groups}.body.0.body.0.weight" in sd:
        groups += 1
    blocks = 0
    while f"body.0.body.{blocks}.body.0.weight" in sd:
        blocks += 1
    n_feats = int(sd["head.0.weight"].shape[0])
    scale = detect_upsample_scale(sd, "tail.0.", n_feats)
    if scale is None:
        return None
    reduction = n_feats // int(sd[ca].shape[0])
    return {"scale": scale, "n_resgroups": groups, "n_resblocks": blocks,
            "n_feats": n_feats, "reduction": reduction}


@register_arch("rcan", RCANConfig, tiny=TINY, detect=_detect_rcan)
class RCAN(SRModel):
    """lr (B, 3, H, W) in [0, 1] -> sr (B, 3, sH, sW), about [0, 1]."""

    def __init__(self, config: RCANConfig) -> None:
        super().__init__()
        self.config = config
        c, rng, mean = config.n_feats, config.rgb_range, config.rgb_mean
        self.sub_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=-1, trainable=True)
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1))
        self.body = nn.Sequential(
            *(ResidualGroup(channels=c, reduction=config.reduction, n_blocks=config.n_resblocks)
              for _ in range(config.n_resgroups)),
            nn.Conv2d(c, c, 3, padding=1),
        )
        self.tail = nn.Sequential(Upsample(scale=config.scale, channels=c),
                                  nn.Conv2d(c, 3, 3, padding=1))
        self.add_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=1, trainable=True)

    def forward(self, lr: Tensor) -> Tensor:
        x = self.head(self.sub_mean(lr * self.config.rgb_range))
        x = self.body(x) + x
        return self.add_mean(self.tail(x)) / self.config.rgb_range

    def traits(self) -> ModelTraits:
        # Local part: 3x3 convs at LR (head, 2 per RCAB + 1 per group, body end,
        # upsampler) ; the channel attention pools globally.
        cfg = self.config
        rf = cfg.n_resgroups * (2 * cfg.n_resblocks + 1) + 4
        return ModelTraits(receptive_field=rf, has_global_ops=True)


register_preset(
    "rcan", "rcan",
    description="RCAN (official: 10 groups x 20 RCABs x 64 feats, channel attention)",
    scales=(2, 3, 4, 8),
    n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16,
)
register_preset(
    "rcan_small", "rcan",
    description="RCAN, 5 groups x 10 RCABs x 64 feats (about a quarter of the official size)",
    scales=(2, 3, 4, 8),
    n_resgroups=5, n_resblocks=10, n_feats=64, reduction=16,
)
