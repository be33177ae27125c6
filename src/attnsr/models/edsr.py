"""``edsr``: EDSR (Lim et al. 2017), the residual baseline every attention SR paper
compares against; official checkpoints of ``sanghyun-son/EDSR-PyTorch`` load as-is.

The official code works on [0, 255] images with a fixed mean shift (DIV2K RGB mean);
this module takes [0, 1] input, scales by ``rgb_range`` and reproduces the official
arithmetic, so official weights give the official output (divided by ``rgb_range``).

Keys: ``sub_mean``, ``head.0``, ``body.<i>.body.{0,2}``, ``body.<n>``, ``tail.0.*``
(upsampler), ``tail.1``, ``add_mean``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.upsample import Upsample, detect_upsample_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"n_resblocks": 2, "n_feats": 8}


class MeanShift(nn.Module):
    """The EDSR/RCAN mean shift: a fixed 1x1 conv adding ``sign * rgb_range * mean``.

    Stored as ``weight`` (3, 3, 1, 1) and ``bias`` (3,) like the official ``nn.Conv2d``
    subclass, so official keys load strictly. ``trainable=False`` keeps them as
    (persistent) buffers, as EDSR freezes them; RCAN's official code meant to freeze
    them but did not (``self.requires_grad = False`` on a module is a no-op), so RCAN
    uses ``trainable=True`` and counts them as parameters.

    Shapes: (B, 3, H, W) -> (B, 3, H, W).
    """

    def __init__(
        self, *, rgb_range: float, rgb_mean: tuple[float, ...], sign: int, trainable: bool
    ) -> None:
        super().__init__()
        weight = torch.eye(3).view(3, 3, 1, 1)
        bias = sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32)
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias)


@dataclass(frozen=True, kw_only=True)
class EDSRConfig:
    scale: int = 4
    in_channels: int = 3
    n_resblocks: int = 16
    n_feats: int = 64
    res_scale: float = 1.0
    rgb_range: float = 255.0
    rgb_mean: tuple[float, float, float] = DIV2K_MEAN

    def __post_init__(self) -> None:
        if self.in_channels != 3:
            raise ValueError("EDSR's mean shift needs in_channels=3")
        if self.n_resblocks < 1 or self.n_feats < 1:
            raise ValueError("n_resblocks and n_feats must be positive")


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, *, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


def _detect_edsr(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """EDSR config from official keys, or None if the keys are not EDSR's."""
    needed = ("sub_mean.weight", "head.0.weight", "body.0.body.0.weight", "tail.1.weight")
    if any(k not in sd for k in needed) or "body.0.body.0.body.0.weight" in sd:
        return None
    n = 0
    while f"body.{n}.body.0.weight" in sd:
        n += 1
    if f"body.{n}.weight" not in sd:
        return None
    n_feats = int(sd["head.0.weight"].shape[0])
    scale = detect_upsample_scale(sd, "tail.0.", n_feats)
    if scale is None:
        return None
    # Not stored in checkpoints: the official large EDSR (256 feats) uses 0.1, the baseline 1.
    res_scale = 0.1 if n_feats == 256 else 1.0
    return {"scale": scale, "n_resblocks": n, "n_feats": n_feats, "res_scale": res_scale}


@register_arch("edsr", EDSRConfig, tiny=TINY, detect=_detect_edsr)
class EDSR(SRModel):
    """lr (B, 3, H, W) in [0, 1] -> sr (B, 3, sH, sW), about [0, 1]."""

    def __init__(self, config: EDSRConfig) -> None:
        super().__init__()
        self.config = config
        c, rng, mean = config.n_feats, config.rgb_range, config.rgb_mean
        self.sub_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=-1, trainable=False)
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1))
        self.body = nn.Sequential(
            *(ResBlock(channels=c, res_scale=config.res_scale) for _ in range(config.n_resblocks)),
            nn.Conv2d(c, c, 3, padding=1),
        )
        self.tail = nn.Sequential(Upsample(scale=config.scale, channels=c),
                                  nn.Conv2d(c, 3, 3, padding=1))
        self.add_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=1, trainable=False)

    def forward(self, lr: Tensor) -> Tensor:
        x = self.head(self.sub_mean(lr * self.config.rgb_range))
        x = self.body(x) + x
        return self.add_mean(self.tail(x)) / self.config.rgb_range

    def traits(self) -> ModelTraits:
        # 3x3 convs at LR: head, 2 per block, body end, first upsampler conv; + ~1 at HR.
        return ModelTraits(receptive_field=2 * self.config.n_resblocks + 4)


register_preset(
    "edsr_baseline", "edsr",
    description="EDSR baseline (16 res-blocks, 64 features), no attention; official weights load",
    scales=(2, 3, 4),
    n_resblocks=16, n_feats=64, res_scale=1.0,
)
