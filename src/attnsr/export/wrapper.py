"""Export-ready modules: the whole pad -> run -> crop -> clamp pipeline as one graph.

:class:`PaddedModel` does in tensor arithmetic what
:class:`~attnsr.runner.Runner` does with Python integers: it pads the
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
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.layers.nonlocal_attention import NonLocalSparseAttention
from attnsr.runner import Runner


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


def exportable(desc: Runner, *, clamp: bool = True) -> nn.Module:
    """The module to trace for ``desc``: its model (bicubic swapped for
    :class:`BicubicUpsample`) inside a :class:`PaddedModel`, in eval mode."""
    model: nn.Module = desc.model
    hook = getattr(model, "export_module", None)
    if hook is not None:
        model = hook()
    wrapped = PaddedModel(
        model, scale=desc.scale, multiple_of=desc.traits.multiple_of,
        min_size=desc.traits.min_size, clamp=clamp,
    )
    return wrapped.eval()


def static_only_reason(model: nn.Module) -> str | None:
    """Why ``model`` can only be exported for one input size (None if it can run at any):
    its traits' ``export_static_reason`` (e.g. NLSN, whose LSH bucket count comes from
    the pixel count in Python, so a trace is right at the traced size only)."""
    traits = model.traits() if hasattr(model, "traits") else None
    return (traits.export_static_reason or None) if traits is not None else None


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
