"""``bicubic``: the parameter-free baseline (MATLAB-exact bicubic upscaling)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset


@dataclass(frozen=True, kw_only=True)
class BicubicConfig:
    scale: int = 4
    in_channels: int = 3


@register_arch("bicubic", BicubicConfig)
class Bicubic(SRModel):
    """MATLAB ``imresize(lr, scale, 'bicubic')`` as a model: (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, config: BicubicConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, lr: Tensor) -> Tensor:
        from attnsr.data.resize import imresize

        return imresize(lr, scale=float(self.config.scale))

    def traits(self) -> ModelTraits:
        return ModelTraits(fp16_safe=True, receptive_field=3)


register_preset("bicubic", "bicubic", description="MATLAB-exact bicubic upscaling (no parameters)",
                scales=(2, 3, 4, 8))

