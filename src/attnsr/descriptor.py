"""The model descriptor: everything inference needs to know about a model, and one
call that pads -> runs -> clamps -> crops (as spandrel's ``ImageModelDescriptor``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.models.base import ModelTraits


@dataclass(eq=False)
class ModelDescriptor:
    """A model plus what callers need to run it right.

    Calling it maps ``lr`` ``(B, C, H, W)`` in [0, 1] to ``sr`` ``(B, C, sH, sW)``
    in [0, 1]: the input is reflect-padded to the model's size multiple, the model
    runs under ``torch.inference_mode``, the output is clamped and cropped.
    """

    model: nn.Module
    name: str
    arch: str
    scale: int
    in_channels: int
    out_channels: int
    traits: ModelTraits
    config: Any = None
    source: str = ""

    @property
    def multiple_of(self) -> int:
        return self.traits.multiple_of

    @property
    def has_global_ops(self) -> bool:
        return self.traits.has_global_ops

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: torch.device | str) -> ModelDescriptor:
        self.model.to(device)
        return self

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """The order to run on ``device`` in: NHWC on CPU where the traits ask for it
        (oneDNN's fast path), NCHW otherwise."""
        nhwc = device.type == "cpu" and self.traits.channels_last
        return torch.channels_last if nhwc else torch.contiguous_format

    def eval(self) -> ModelDescriptor:
        self.model.eval()
        return self

    def pad_amounts(self, h: int, w: int) -> tuple[int, int]:
        """Bottom/right padding that makes (h, w) valid for the model."""
        m = self.traits.multiple_of
        ph = max((-h) % m, self.traits.min_size - h, 0)
        pw = max((-w) % m, self.traits.min_size - w, 0)
        return ph, pw

    def run(self, lr: Tensor) -> Tensor:
        """Pad -> forward -> crop, without clamping (training / analysis)."""
        h, w = lr.shape[-2:]
        ph, pw = self.pad_amounts(h, w)
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            lr = F.pad(lr, (0, pw, 0, ph), mode=mode)
        sr = self.model(lr)
        s = self.scale
        return sr[..., : h * s, : w * s]

    def __call__(self, lr: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.run(lr).clamp_(0.0, 1.0)


def describe(model: nn.Module, name: str = "", source: str = "") -> ModelDescriptor:
    """Build the descriptor of an attnsr model (an :class:`~attnsr.models.SRModel`)."""
    config = getattr(model, "config", None)
    traits = model.traits() if hasattr(model, "traits") else ModelTraits()
    in_ch = int(getattr(config, "in_channels", 3))
    out_ch = int(getattr(config, "out_channels", in_ch))
    arch = getattr(model, "arch_name", type(model).__name__.lower())
    return ModelDescriptor(
        model=model.eval(),
        name=name or arch,
        arch=arch,
        scale=int(config.scale),
        in_channels=in_ch,
        out_channels=out_ch,
        traits=traits,
        config=config,
        source=source,
    )
