"""Local Attribution Maps (LAM; Gu & Dong, "Interpreting Super-Resolution Networks with
Local Attribution Maps", CVPR 2021).

Which input pixels does the network use to produce one output patch? LAM integrates
gradients along a *progressive-blur path*: the baseline is the input blurred by a
Gaussian of ``sigma`` (structure removed, colours kept), and the path ``x_0 .. x_n``
removes the blur step by step (``sigma_k = sigma * (1 - k / n)``, so ``x_n`` is the
input). With ``F`` the objective of the output patch (the sum of its gradient magnitude,
as in the paper, or the plain sum of its pixels),

    attribution = sum_k (grad F(x_k) + grad F(x_{k-1})) / 2 * (x_k - x_{k-1})

(the trapezoid rule of the path integral; the paper's right-endpoint sum converges to the
same limit, more slowly). Completeness: ``attribution.sum() ~ F(x) - F(x_0)``.

The *diffusion index* summarises how spread out the attribution is: with ``G`` the Gini
coefficient of ``|attribution|`` (summed over channels), ``DI = (1 - G) * 100``; a model
using a wider range of pixels has a larger DI.

For speed on large images LAM can run on a *context* crop: the patch's footprint in the
input widened by ``context`` pixels on every side (exact for local models whose receptive
field is within ``context``; an approximation for models with global operations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Box = tuple[int, int, int, int]  # x, y, width, height
# Input pixels per LAM batch when the batch size is automatic: large batches run faster
# on CPU, and the activations of a light model at 64k pixels stay well under 1 GB.
BATCH_PIXELS = 65536


@dataclass(frozen=True, kw_only=True)
class LAMConfig:
    """LAM settings.

    Attributes:
        steps: path steps n (the paper's demo: 50).
        sigma: Gaussian blur of the baseline, in input pixels.
        objective: ``"gradient"`` (sum of the gradient magnitude of the SR patch, the
            paper's choice) or ``"sum"`` (sum of its pixel values).
        batch_size: path images per forward/backward pass (None: as many as fit in
            about :data:`BATCH_PIXELS` input pixels, at most 16).
        context: input pixels around the patch footprint that LAM runs on (None: the
            whole image).
    """

    steps: int = 50
    sigma: float = 4.0
    objective: Literal["gradient", "sum"] = "gradient"
    batch_size: int | None = None
    context: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or (self.batch_size or 1) < 1 or self.sigma <= 0:
            raise ValueError("steps, batch_size and sigma must be positive")
        if self.objective not in ("gradient", "sum"):
            raise ValueError(f"unknown LAM objective {self.objective!r}")


@dataclass(frozen=True, kw_only=True, eq=False)
class LAMResult:
    """Attributions of one output patch.

    Attributes:
        attribution: ``(C, H, W)`` over the whole input (zero outside ``region``).
        saliency: ``(H, W)`` ``|attribution|`` summed over channels, scaled to [0, 1].
        region: ``(x, y, w, h)`` of the input LAM ran on (the context crop).
        patch: ``(x, y, w, h)`` of the output patch (SR pixels).
        gini: Gini coefficient of ``|attribution|`` over ``region``.
        diffusion_index: ``(1 - gini) * 100``.
        objective: ``F(input)``.  baseline_objective: ``F(blurred baseline)``.
        total: ``attribution.sum()`` (completeness: ``~ objective - baseline_objective``).
        steps: path steps used.
    """

    attribution: Tensor
    saliency: Tensor
    region: Box
    patch: Box
    gini: float
    diffusion_index: float
    objective: float
    baseline_objective: float
    total: float
    steps: int

    @property
    def completeness_error(self) -> float:
        """``|total - (F(x) - F(x_0))| / |F(x) - F(x_0)|``."""
        delta = self.objective - self.baseline_objective
        return abs(self.total - delta) / max(abs(delta), 1e-12)


# -------------------------------------------------------------------- blur path


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised Gaussian taps ``(2r + 1,)`` with ``r = ceil(3 sigma)`` (at least 1)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).to(dtype)


def blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``x`` ``(B, C, H, W)``; ``sigma <= 0`` returns a copy.
    Borders are reflected (replicated when the image is smaller than the kernel)."""
    if sigma <= 0:
        return x.clone()
    k = gaussian_kernel1d(sigma, x.dtype).to(x.device)
    r, C = k.numel() // 2, x.shape[1]
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (r, r, r, r), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)  # rows
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)  # columns


def blur_path(x: Tensor, sigma: float, steps: int) -> Tensor:
    """The progressive-blur path of ``x`` ``(1, C, H, W)``: ``(steps + 1, C, H, W)``,
    index 0 the baseline (blur ``sigma``), index ``steps`` the input itself."""
    sigmas = np.linspace(sigma, 0.0, steps + 1)
    return torch.cat([blur(x, float(s)) for s in sigmas], dim=0)


# -------------------------------------------------------------------- objective


def patch_objective(sr: Tensor, patch: Box, kind: str = "gradient") -> Tensor:
    """Objective of the SR patch ``(x, y, w, h)`` for each image of ``sr`` ``(B, C, H, W)``:
    ``(B,)``. ``"gradient"``: sum over the patch and channels of
    ``sqrt(dx^2 + dy^2)`` (forward differences, as LAM); ``"sum"``: sum of the pixels."""
    x, y, w, h = patch
    if kind == "sum":
        return sr[..., y : y + h, x : x + w].sum(dim=(1, 2, 3))
    crop = sr[..., y : y + h + 1, x : x + w + 1]  # one extra row/column for the differences
    dy = crop[..., 1:, :-1] - crop[..., :-1, :-1]
    dx = crop[..., :-1, 1:] - crop[..., :-1, :-1]
    # eps keeps the gradient finite where the patch is flat
    mag = torch.sqrt(dx.pow(2) + dy.pow(2) + 1e-8)
    return mag[..., :h, :w].sum(dim=(1, 2, 3))


# -------------------------------------------------------------------- statistics


def gini(values: np.ndarray | Tensor) -> float:
    """Gini coefficient of non-negative ``values`` (any shape): 0 = uniform, -> 1 = all
    mass on one element. ``sum_i (2i - n - 1) v_(i) / (n sum v)``, ``v`` sorted."""
    v = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    n, total = v.size, v.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * v) / (n * total))


def diffusion_index(attribution: np.ndarray | Tensor) -> float:
    """LAM's diffusion index ``(1 - Gini(|a| summed over channels)) * 100`` of an
    attribution ``(C, H, W)`` (or ``(H, W)``)."""
    a = np.abs(np.asarray(attribution, dtype=np.float64))
    if a.ndim == 3:
        a = a.sum(axis=0)
    return (1.0 - gini(a)) * 100.0


# ------------------------------------------------------------------------- LAM


def _forward_fn(model: object) -> Callable[[Tensor], Tensor]:
    """A differentiable ``lr -> sr``: a descriptor's ``run`` (pads/crops), else the module."""
    run = getattr(model, "run", None)
    if callable(run):
        return run
    if isinstance(model, nn.Module) or callable(model):
        return model  # type: ignore[return-value]
    raise TypeError(f"cannot run {type(model).__name__}")


def context_region(size: tuple[int, int], patch: Box, scale: int, context: int | None) -> Box:
    """The input box ``(x, y, w, h)`` LAM runs on: the footprint of the SR ``patch`` in an
    input of ``size`` ``(H, W)``, widened by ``context`` pixels (None: everything)."""
    H, W = size
    if context is None:
        return 0, 0, W, H
    px, py, pw, ph = patch
    x0, y0 = max(px // scale - context, 0), max(py // scale - context, 0)
    x1 = min(-(-(px + pw) // scale) + context, W)
    y1 = min(-(-(py + ph) // scale) + context, H)
    return x0, y0, x1 - x0, y1 - y0


def _path_gradients(
    fn: Callable[[Tensor], Tensor], path: Tensor, patch: Box, cfg: LAMConfig
) -> tuple[Tensor, Tensor]:
    """``grad F`` at every path image and ``F`` itself: ``(n+1, C, H, W)``, ``(n+1,)``."""
    grads, values = [], []
    per_pixel = max(1, BATCH_PIXELS // (path.shape[-2] * path.shape[-1]))
    for chunk in path.split(cfg.batch_size or min(16, per_pixel)):
        x = chunk.detach().requires_grad_(True)
        with torch.enable_grad():
            obj = patch_objective(fn(x), patch, cfg.objective)  # B
            # images are independent (no batch statistics), so one backward serves all
            (g,) = torch.autograd.grad(obj.sum(), x)
        grads.append(g.detach())
        values.append(obj.detach())
    return torch.cat(grads), torch.cat(values)


def local_attribution_map(
    model: object, lr: Tensor, patch: Box, config: LAMConfig | None = None,
    *, scale: int | None = None,
) -> LAMResult:
    """LAM of the SR ``patch`` ``(x, y, w, h)`` (SR pixels) for input ``lr``
    ``(1, C, H, W)`` or ``(C, H, W)`` in [0, 1].

    ``model``: a :class:`~attnsr.runner.Runner` (its ``run`` is used) or an
    ``nn.Module`` mapping ``(B, C, H, W)`` to ``(B, C, sH, sW)``; ``scale`` defaults to
    the model's. The model should be in eval mode; its parameters receive no gradient.
    """
    cfg = config or LAMConfig()
    lr = lr if lr.dim() == 4 else lr.unsqueeze(0)
    s = int(scale if scale is not None else model.scale)  # type: ignore[attr-defined]
    rx, ry, rw, rh = context_region(tuple(lr.shape[-2:]), patch, s, cfg.context)
    local_patch = (patch[0] - rx * s, patch[1] - ry * s, patch[2], patch[3])
    path = blur_path(lr[..., ry : ry + rh, rx : rx + rw], cfg.sigma, cfg.steps)  # n+1, C, h, w
    grads, values = _path_gradients(_forward_fn(model), path, local_patch, cfg)
    attr = ((grads[1:] + grads[:-1]) * 0.5 * (path[1:] - path[:-1])).sum(dim=0)  # C, h, w
    full = torch.zeros(lr.shape[1:], dtype=attr.dtype, device=attr.device)
    full[:, ry : ry + rh, rx : rx + rw] = attr
    sal = full.abs().sum(dim=0)
    g = gini(attr.abs().sum(dim=0).cpu())
    return LAMResult(
        attribution=full.cpu(), saliency=(sal / sal.max().clamp_min(1e-12)).cpu(),
        region=(rx, ry, rw, rh), patch=tuple(patch), gini=g, diffusion_index=(1 - g) * 100,
        objective=float(values[-1]), baseline_objective=float(values[0]),
        total=float(attr.sum()), steps=cfg.steps,
    )
