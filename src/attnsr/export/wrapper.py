"""Export-ready modules: the whole pad -> run -> crop -> clamp pipeline as one graph.

:class:`PaddedModel` does in tensor arithmetic what
:class:`~attnsr.descriptor.ModelDescriptor` does with Python integers: it pads the
input at the bottom/right to the model's size multiple (reflect, or replicate when the
image is too small to reflect, exactly the descriptor's rule), runs the model, crops
and optionally clamps. Sizes are read with ``torch._shape_as_tensor`` and the padding
is an index gather, so a traced graph (ONNX or TorchScript) keeps them symbolic and
runs at any input size.

:class:`BicubicUpsample` is MATLAB's integer-factor bicubic upscaling written as a
fixed convolution: the eager :class:`~attnsr.models.bicubic.Bicubic` builds its weight
tables in numpy from the input size, which a tracer would bake in as constants.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.data.resize import cubic
from attnsr.descriptor import ModelDescriptor
from attnsr.layers.nonlocal_attention import NonLocalSparseAttention

_BICUBIC_TAPS = 5  # offsets -2..2 around the nearest source pixel cover the 4-wide kernel


def pad_index(n: Tensor, pad: Tensor, reflect: Tensor) -> Tensor:
    """Source indices ``(n + pad,)`` that pad a length-``n`` axis by ``pad`` at its end.

    ``n``, ``pad``: 0-dim int64 tensors; ``reflect``: 0-dim bool tensor choosing reflect
    (``x[n-2], x[n-3], ...``, needs ``pad < n``) or replicate (``x[n-1]`` repeated).
    """
    i = torch.arange(n + pad)
    reflected = torch.where(i < n, i, 2 * (n - 1) - i)
    replicated = torch.clamp(i, max=n - 1)
    return torch.where(reflect, reflected, replicated)


class PaddedModel(nn.Module):
    """``lr`` ``(B, C, H, W)`` in [0, 1] -> ``sr`` ``(B, C', sH, sW)`` for any ``H, W``.

    Pads to ``multiple_of`` (and ``min_size``) like the descriptor, runs ``model``,
    crops to ``(sH, sW)`` and clamps to [0, 1] when ``clamp``. With ``multiple_of ==
    min_size == 1`` the padding and crop are left out of the graph.
    """

    def __init__(
        self, model: nn.Module, *, scale: int, multiple_of: int = 1, min_size: int = 1,
        clamp: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.scale, self.multiple_of, self.min_size = scale, multiple_of, min_size
        self.clamp = clamp

    @property
    def pads(self) -> bool:
        return self.multiple_of > 1 or self.min_size > 1

    def forward(self, lr: Tensor) -> Tensor:
        if not self.pads:
            sr = self.model(lr)
        else:
            hw = torch._shape_as_tensor(lr)[-2:]  # symbolic under tracing
            pad = torch.clamp(torch.maximum((-hw) % self.multiple_of, self.min_size - hw), min=0)
            reflect = (pad < hw).all()  # the descriptor's rule: reflect only if both fit
            x = lr.index_select(-2, pad_index(hw[0], pad[0], reflect))
            x = x.index_select(-1, pad_index(hw[1], pad[1], reflect))
            sr = self.model(x)
            sr = sr.index_select(-2, torch.arange(hw[0] * self.scale))
            sr = sr.index_select(-1, torch.arange(hw[1] * self.scale))
        return sr.clamp(0.0, 1.0) if self.clamp else sr


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


def exportable(desc: ModelDescriptor, *, clamp: bool = True) -> nn.Module:
    """The module to trace for ``desc``: its model (bicubic swapped for
    :class:`BicubicUpsample`) inside a :class:`PaddedModel`, in eval mode."""
    model: nn.Module = desc.model
    if desc.arch == "bicubic":
        model = BicubicUpsample(desc.scale)
    wrapped = PaddedModel(
        model, scale=desc.scale, multiple_of=desc.traits.multiple_of,
        min_size=desc.traits.min_size, clamp=clamp,
    )
    return wrapped.eval()


def static_only_reason(model: nn.Module) -> str | None:
    """Why ``model`` can only be exported for one input size (None if it can run at any).

    Non-local sparse attention (NLSN) derives its number of LSH buckets and chunks, and
    so the shape of its random rotations, from the pixel count in Python: a trace
    freezes them, and the graph is right at the traced size only.
    """
    if any(isinstance(m, NonLocalSparseAttention) for m in model.modules()):
        return ("its non-local sparse attention takes the number of hash buckets and "
                "chunks (and its random rotations) from the pixel count")
    return None


@contextmanager
def frozen_rotations(module: nn.Module, sample: Tensor) -> Iterator[None]:
    """While tracing ``module`` on ``sample``: serve each NLSA layer's eval-mode random
    rotations (drawn from a seeded ``torch.Generator``, which tracers cannot record) as
    constants recorded by one eager forward on ``sample`` -- the same values."""
    layers = [m for m in module.modules() if isinstance(m, NonLocalSparseAttention)]
    if not layers:
        yield
        return
    caches: list[dict[tuple[int, int], Tensor]] = [{} for _ in layers]
    for layer, cache in zip(layers, caches, strict=True):
        layer._rotations = _recording(layer._rotations, cache)  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            module(sample)
        for layer, cache in zip(layers, caches, strict=True):
            layer._rotations = _replaying(cache)  # type: ignore[method-assign]
        yield
    finally:
        for layer in layers:
            vars(layer).pop("_rotations", None)  # back to the class's method


def _recording(original: Any, cache: dict[tuple[int, int], Tensor]) -> Any:
    def record(dim: int, n_buckets: int, like: Tensor) -> Tensor:
        out = original(dim, n_buckets, like)
        cache[(int(dim), int(n_buckets))] = out
        return out

    return record


def _replaying(cache: dict[tuple[int, int], Tensor]) -> Any:
    def replay(dim: Any, n_buckets: Any, like: Tensor) -> Tensor:
        return cache[(int(dim), int(n_buckets))].to(like.dtype)

    return replay
