"""``bicubic``: the parameter-free baseline (MATLAB-exact bicubic upscaling)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.data.resize import cubic, imresize
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset

_BICUBIC_TAPS = 5  # offsets -2..2 around the nearest source pixel cover the 4-wide kernel


@lru_cache(maxsize=16)
def bicubic_phase_weights(scale: int) -> np.ndarray:
    """MATLAB bicubic upscaling weights by an integer ``scale``: ``(scale, 5)`` float64.

    Output sample ``k * scale + p`` (0-based) reads source pixels ``k - 2 .. k + 2``
    (mirrored at the borders) with row ``p``. Derived from MATLAB's source coordinate
    ``u = x / s + 0.5 (1 - 1 / s)``: the offset to pixel ``k + d`` is
    ``(p + 0.5) / s - 0.5 - d``, independent of ``k``, so the table is the same
    everywhere and the resize is a convolution.
    """
    p = np.arange(scale, dtype=np.float64)[:, None]
    d = np.arange(_BICUBIC_TAPS, dtype=np.float64)[None, :] - _BICUBIC_TAPS // 2
    w = cubic((p + 0.5) / scale - 0.5 - d)
    return w / w.sum(axis=1, keepdims=True)


def _symmetric_pad_width(x: Tensor, pad: int) -> Tensor:
    """MATLAB's mirror padding (edge sample repeated) by ``pad`` on both ends of the last
    dimension; needs ``x.shape[-1] >= pad``. Constant slices keep traced graphs dynamic."""
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], -1)


class BicubicUpsample(nn.Module):
    """MATLAB ``imresize(lr, s, 'bicubic')`` for an integer ``s >= 1`` as two 1-D
    convolutions plus sample interleaving: ``(B, C, H, W)`` -> ``(B, C, sH, sW)``,
    ``H, W >= 2``. Equals :func:`attnsr.data.resize.imresize` up to float rounding."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"BicubicUpsample needs an integer scale >= 1, got {scale}")
        self.scale = int(scale)
        w = torch.from_numpy(bicubic_phase_weights(self.scale)).float()
        self.register_buffer("weight", w[:, None, None, :], persistent=False)  # s, 1, 1, 5

    def _upsample_width(self, x: Tensor) -> Tensor:
        """``(N, 1, H, W)`` -> ``(N, 1, H, sW)``: each output column from 5 input columns."""
        n, _, h, w = x.shape
        x = _symmetric_pad_width(x, _BICUBIC_TAPS // 2)
        phases = F.conv2d(x, self.weight.to(x.dtype))  # N, s, H, W
        return phases.permute(0, 2, 3, 1).reshape(n, 1, h, w * self.scale)

    def forward(self, lr: Tensor) -> Tensor:
        b, c, h, w = lr.shape
        x = lr.reshape(b * c, 1, h, w)
        x = self._upsample_width(x)  # B*C, 1, H, sW
        x = self._upsample_width(x.transpose(-2, -1)).transpose(-2, -1)  # B*C, 1, sH, sW
        return x.reshape(b, c, h * self.scale, w * self.scale)


@dataclass(frozen=True, kw_only=True)
class BicubicConfig:
    scale: int = 4
    in_channels: int = 3


@register_arch("bicubic", BicubicConfig, tiny={})
class Bicubic(SRModel):
    """MATLAB ``imresize(lr, scale, 'bicubic')`` as a model: (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, config: BicubicConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, lr: Tensor) -> Tensor:
        return imresize(lr, scale=float(self.config.scale))

    def traits(self) -> ModelTraits:
        return ModelTraits(fp16_safe=True, receptive_field=3, any_scale=True)

    def upscale_uint8(self, lr: np.ndarray, scale: int) -> np.ndarray:
        """MATLAB's integer path: uint8 ``(h, w, C)`` -> uint8 ``(sh, sw, C)``, rounded after
        each 1-D pass as ``imresize`` does on uint8 images (the published bicubic numbers).
        Any integer ``scale`` (the traits say ``any_scale``)."""
        return imresize(lr, float(scale))

    def export_module(self) -> nn.Module:
        """The graph-friendly equivalent for ONNX/TorchScript: :class:`BicubicUpsample`."""
        return BicubicUpsample(self.scale)


register_preset("bicubic", "bicubic", description="MATLAB-exact bicubic upscaling (no parameters)",
                scales=(2, 3, 4, 8))

