"""The base class every attnsr architecture derives from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn


@dataclass(frozen=True, kw_only=True)
class ModelTraits:
    """What inference needs to know about an architecture (besides its config).

    Attributes:
        multiple_of: input height and width must be a multiple of this (window size).
        min_size: smallest input side the model accepts.
        fp16_safe: half precision does not overflow (most attention models: False).
        bf16_safe: bfloat16 is fine.
        has_global_ops: global pooling / non-local attention make the output depend
            on the whole image (tiling is then approximate).
        receptive_field: radius in LR pixels that influences one output pixel
            (an estimate; for global models the local part only).
        channels_last: CPU inference runs with weights and input in NHWC memory order
            (oneDNN's fast path: 1.1x to 2.2x faster for every model of the zoo, same
            output to float rounding; ``benchmarks/upscale_speed.py``).
        export_static_reason: why an exported graph is right at the traced input size
            only ('' when it runs at any size).
        any_scale: parameter-free resizing that runs at any integer scale, whatever its
            config says (bicubic).
    """

    multiple_of: int = 1
    min_size: int = 1
    fp16_safe: bool = False
    bf16_safe: bool = True
    has_global_ops: bool = False
    receptive_field: int = 16
    channels_last: bool = True
    export_static_reason: str = ""
    any_scale: bool = False


class SRModel(nn.Module):
    """Base of every registered architecture.

    Subclasses set ``arch_name`` (via :func:`attnsr.models.registry.register_arch`),
    take one frozen config dataclass in ``__init__`` (kept as ``self.config``; it has
    ``scale``), map ``lr`` ``(B, C, H, W)`` in [0, 1] to ``sr`` ``(B, C, sH, sW)``
    (about [0, 1], not clamped), and override :meth:`traits` where needed.

    Optional hooks, looked up by the engines (never by architecture name):
    ``upscale_uint8(lr_uint8, scale) -> sr_uint8``, an exact integer path the evaluation uses
    instead of the float forward (MATLAB bicubic), and ``export_module() -> nn.Module``,
    the module ONNX/TorchScript export traces in place of this one.
    """

    arch_name: ClassVar[str] = ""
    config: Any

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def in_channels(self) -> int:
        return int(getattr(self.config, "in_channels", 3))

    def traits(self) -> ModelTraits:
        return ModelTraits()
