"""Real-world degradation: blur, resize, noise and JPEG, as the practical SR recipes do.

The operators follow their published definitions (Real-ESRGAN, Wang et al. 2021; BSRGAN,
Zhang et al. 2021) and work on float images ``(H, W, 3)`` in [0, 1] (numpy, float32):

- blur kernels (:func:`gaussian_kernel`, :func:`generalized_gaussian_kernel`,
  :func:`plateau_kernel`, :func:`sinc_kernel`), each normalised to sum to 1, applied by
  :func:`blur` (2-D convolution, reflect padding);
- :func:`resize` with ``area``/``bilinear``/``bicubic`` (torch, no antialiasing, as
  Real-ESRGAN) or ``matlab`` (the MATLAB-exact antialiased bicubic of
  :mod:`attnsr.data.resize`);
- :func:`gaussian_noise` and :func:`poisson_noise`, colour or gray (one noise plane
  added to every channel);
- :func:`jpeg`: a round trip through Pillow's libjpeg at a given quality.

:func:`degrade` chains them as configured by a :class:`DegradationConfig` (first order,
optionally a second order, then the final resize to the LR size with a sinc filter and
JPEG in random order; BSRGAN's shuffled order with ``shuffle``), with a probability of a
clean MATLAB-bicubic sample. Every random draw comes from the ``numpy.random.Generator``
passed in, so a seed reproduces the sample exactly.

:data:`PRESETS` are the fixed evaluation degradations behind ``attnsr eval
--degradation``: each image gets its own parameters from a seed made of the preset, the
image name and the scale.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attnsr.data.resize import imresize

KernelKind = Literal["iso", "aniso", "generalized_iso", "generalized_aniso",
                     "plateau_iso", "plateau_aniso"]
ResizeMode = Literal["area", "bilinear", "bicubic", "matlab"]
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# ---------------------------------------------------------------------------- kernels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel coordinates ``(x, y)`` of an odd ``size`` x ``size`` kernel."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    r = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(r, r, indexing="xy")


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``d^T Sigma^-1 d`` over the kernel grid, ``Sigma = R diag(sx^2, sy^2) R^T`` with
    ``R`` the rotation by ``theta`` (radians)."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {sigma_x}, {sigma_y}")
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * x + s * y  # coordinates along the rotated axes
    v = -s * x + c * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
    """(An)isotropic Gaussian ``exp(-d^T Sigma^-1 d / 2)``, ``(size, size)``, sums to 1."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(np.exp(-0.5 * q))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                                theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """Generalized Gaussian ``exp(-(d^T Sigma^-1 d)^beta / 2)`` (beta = 1: Gaussian)."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(np.exp(-0.5 * np.power(q, beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                   theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """Plateau-shaped ``1 / (1 + (d^T Sigma^-1 d)^beta)`` (Real-ESRGAN)."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(1.0 / (1.0 + np.power(q, beta)))


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, by its integral
    ``J1(x) = 1/pi * int_0^pi cos(t - x sin t) dt`` (trapezoid rule on a periodic
    integrand: exponentially accurate, about 1e-12 for ``|x| < 60`` with 256 nodes)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.linspace(0.0, np.pi, 257)
    vals = np.cos(t - x[..., None] * np.sin(t))
    return (vals[..., 1:-1].sum(-1) + 0.5 * (vals[..., 0] + vals[..., -1])) / 256.0


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """2-D circular low-pass (jinc) ``cutoff * J1(cutoff r) / (2 pi r)`` with cutoff
    frequency ``cutoff`` in radians per pixel (ringing/overshoot artefacts), sums to 1."""
    if not 0 < cutoff <= math.pi:
        raise ValueError(f"cutoff must be in (0, pi], got {cutoff}")
    x, y = _grid(size)
    r = np.hypot(x, y)
    safe = np.where(r == 0, 1.0, r)
    k = np.where(r == 0, cutoff**2 / (4 * math.pi),
                 cutoff * bessel_j1(cutoff * safe) / (2 * math.pi * safe))
    return _normalised(k)


# ---------------------------------------------------------------------------- operators


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` -> ``(1, C, H, W)`` float32."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).contiguous().numpy()


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel of ``img`` ``(H, W, C)`` with ``kernel`` ``(k, k)`` (odd k),
    reflect padding (replicate where the image is smaller than the kernel radius)."""
    k = kernel.shape[0]
    t = _to_tensor(img)
    pad = k // 2
    mode = "reflect" if min(img.shape[:2]) > pad else "replicate"
    t = F.pad(t, (pad, pad, pad, pad), mode=mode)
    c = t.shape[1]
    weight = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32))
    weight = weight.expand(c, 1, k, k)  # true convolution (flipped) for every channel
    return _to_numpy(F.conv2d(t, weight, groups=c))


def resize(img: np.ndarray, size: tuple[int, int], mode: ResizeMode) -> np.ndarray:
    """Resize ``(H, W, C)`` to ``size = (h, w)``. ``matlab``: MATLAB-exact bicubic with
    antialiasing; the others: ``torch.nn.functional.interpolate`` without antialiasing
    (as Real-ESRGAN, which keeps aliasing among the degradations)."""
    h, w = size
    if (h, w) == img.shape[:2]:
        return img
    if mode == "matlab":
        return np.asarray(imresize(img.astype(np.float32), output_size=(h, w)), np.float32)
    t = _to_tensor(img)
    kwargs = {} if mode == "area" else {"align_corners": False}
    return _to_numpy(F.interpolate(t, size=(h, w), mode=mode, **kwargs))


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator,
                   gray: bool = False) -> np.ndarray:
    """``img + N(0, sigma^2)`` (``sigma`` on the [0, 1] scale); ``gray``: one noise plane
    shared by all channels. Not clipped."""
    shape = img.shape[:2] + ((1,) if gray else img.shape[2:])
    return img + rng.normal(0.0, sigma, size=shape).astype(np.float32)


def poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator,
                  gray: bool = False, peak: float = 255.0) -> np.ndarray:
    """Shot noise: ``img + scale * (Poisson(peak x) / peak - x)`` where ``x`` is the image
    (``gray``: its BT.601 luma, one plane for all channels). Its variance at intensity
    ``x`` is ``scale^2 x / peak``. Not clipped."""
    x = np.clip(img, 0.0, 1.0)
    if gray:
        x = (x @ _LUMA)[..., None]
    noise = rng.poisson(x * peak).astype(np.float32) / peak - x
    return img + scale * noise.astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through libjpeg (Pillow, 4:2:0 chroma subsampling) at ``quality``:
    ``img`` is rounded to uint8 first; returns float32 in [0, 1]."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class BlurConfig:
    """Blur kernels: applied with probability ``prob``; the kind drawn with ``kinds``
    weights; odd side drawn from ``kernel_size``; ``sigma`` per axis, rotation uniform;
    shape exponent ``beta_generalized`` / ``beta_plateau``. Sigmas are in pixels of the
    image the stage sees."""

    prob: float = 1.0
    kinds: dict[str, float] = field(default_factory=lambda: {
        "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
        "plateau_iso": 0.12, "plateau_aniso": 0.03})
    kernel_size: tuple[int, int] = (7, 21)
    sigma: tuple[float, float] = (0.2, 3.0)
    beta_generalized: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1


@dataclass(frozen=True, kw_only=True)
class ResizeConfig:
    """Random resize: ``up``/``down``/``keep`` drawn with ``probs``, factor uniform in
    ``up_range`` / ``down_range``; mode drawn from ``modes``. ``relative_to``: the factor
    applies to the ``input`` of the stage (its current size), or to the ``output`` LR size
    (Real-ESRGAN's second order: the second stage's noise and JPEG then happen near the
    LR resolution, as on a real photo); ``keep`` keeps the current size either way."""

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    up_range: tuple[float, float] = (1.0, 1.5)
    down_range: tuple[float, float] = (0.5, 1.0)
    modes: list[str] = field(default_factory=lambda: ["area", "bilinear", "bicubic"])
    relative_to: Literal["input", "output"] = "input"


@dataclass(frozen=True, kw_only=True)
class NoiseConfig:
    """Noise with probability ``prob``: Gaussian with ``gaussian_prob`` (``sigma`` in 0-255
    levels), else Poisson (``poisson_scale``); gray (all channels alike) with ``gray_prob``."""

    prob: float = 1.0
    gaussian_prob: float = 0.5
    sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_prob: float = 0.4


@dataclass(frozen=True, kw_only=True)
class JpegConfig:
    prob: float = 1.0
    quality: tuple[int, int] = (30, 95)


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One order of degradation: blur -> resize -> noise -> JPEG (``shuffle``: random
    order, as BSRGAN)."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """The whole pipeline (``data.degradation`` of a training config).

    ``enabled``: off by default (MATLAB bicubic LR, as the benchmarks). ``clean_prob``: a
    sample is plain MATLAB bicubic anyway (keeps clean inputs good). ``second_order_prob``:
    the ``second`` stage follows the ``first``. Then the image is resized to the LR size
    (mode from ``final_modes``), a sinc filter (``final_sinc_prob``, cutoff in
    ``sinc_cutoff``) and ``final_jpeg`` are applied in random order. ``shuffle``: the
    operators of each stage in random order. ``camera_prob``: instead of all that, a
    sample is degraded once, as a camera does (:func:`camera_degrade`): optical blur
    (``first.blur``), the downscale to the LR size (``final_modes``), sensor noise at the
    LR size (``second.noise``) and JPEG at the LR size (``final_jpeg``), in that order.
    """

    enabled: bool = False
    clean_prob: float = 0.1
    camera_prob: float = 0.0
    first: StageConfig = field(default_factory=StageConfig)
    second_order_prob: float = 0.5
    second: StageConfig = field(default_factory=lambda: StageConfig(
        blur=BlurConfig(prob=0.8, sigma=(0.2, 1.5)),
        resize=ResizeConfig(probs=(0.3, 0.4, 0.3), up_range=(1.0, 1.2), down_range=(0.3, 1.0)),
        noise=NoiseConfig(sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5))))
    final_modes: list[str] = field(default_factory=lambda: ["area", "bilinear", "bicubic",
                                                            "matlab"])
    final_sinc_prob: float = 0.8
    sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    final_jpeg: JpegConfig = field(default_factory=JpegConfig)
    shuffle: bool = False


KERNEL_KINDS: tuple[str, ...] = KernelKind.__args__  # type: ignore[attr-defined]
RESIZE_MODES: tuple[str, ...] = ResizeMode.__args__  # type: ignore[attr-defined]


def check_config(cfg: DegradationConfig, where: str = "data.degradation") -> None:
    """Raise ``ValueError`` naming the key of the first out-of-range value."""
    probs = {"clean_prob": cfg.clean_prob, "camera_prob": cfg.camera_prob,
             "second_order_prob": cfg.second_order_prob,
             "final_sinc_prob": cfg.final_sinc_prob, "final_jpeg.prob": cfg.final_jpeg.prob}
    for name, stage in (("first", cfg.first), ("second", cfg.second)):
        probs.update({f"{name}.blur.prob": stage.blur.prob, f"{name}.noise.prob": stage.noise.prob,
                      f"{name}.blur.sinc_prob": stage.blur.sinc_prob,
                      f"{name}.noise.gray_prob": stage.noise.gray_prob,
                      f"{name}.noise.gaussian_prob": stage.noise.gaussian_prob,
                      f"{name}.jpeg.prob": stage.jpeg.prob})
        unknown = sorted(set(stage.blur.kinds) - set(KERNEL_KINDS))
        if unknown:
            raise ValueError(f"{where}.{name}.blur.kinds: unknown kind {unknown[0]!r}; "
                             f"known: {list(KERNEL_KINDS)}")
        for mode in stage.resize.modes:
            if mode not in RESIZE_MODES:
                raise ValueError(f"{where}.{name}.resize.modes: unknown mode {mode!r}; "
                                 f"known: {list(RESIZE_MODES)}")
        lo, hi = stage.blur.kernel_size
        if lo % 2 == 0 or hi % 2 == 0 or lo > hi or lo < 1:
            raise ValueError(f"{where}.{name}.blur.kernel_size: odd sizes lo <= hi, "
                             f"got {stage.blur.kernel_size}")
    for key, p in probs.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{where}.{key}: a probability in [0, 1], got {p}")
    for mode in cfg.final_modes:
        if mode not in RESIZE_MODES:
            raise ValueError(f"{where}.final_modes: unknown mode {mode!r}; "
                             f"known: {list(RESIZE_MODES)}")
    _check_draws(cfg, where)


def _check_draws(cfg: DegradationConfig, where: str) -> None:
    """Weights, choice lists and ranges that the sampler would otherwise fail on mid-run."""
    weights: dict[str, list[float]] = {}
    ranges = {"sinc_cutoff": cfg.sinc_cutoff}
    for name, stage in (("first", cfg.first), ("second", cfg.second)):
        weights[f"{name}.resize.probs"] = list(stage.resize.probs)
        weights[f"{name}.blur.kinds"] = list(stage.blur.kinds.values())
        ranges[f"{name}.blur.sigma"] = stage.blur.sigma
        if not stage.resize.modes:
            raise ValueError(f"{where}.{name}.resize.modes: at least one mode")
    for key, w in weights.items():
        if min(w, default=-1.0) < 0 or sum(w) <= 0:
            raise ValueError(f"{where}.{key}: non-negative weights with a positive sum, got {w}")
    for key, (lo, hi) in ranges.items():
        top = math.pi if key == "sinc_cutoff" else math.inf
        if not 0 < lo <= hi <= top:
            raise ValueError(f"{where}.{key}: a range 0 < lo <= hi <= {top:g}, got {(lo, hi)}")
    if not cfg.final_modes:
        raise ValueError(f"{where}.final_modes: at least one mode")


# ---------------------------------------------------------------------------- pipeline


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def random_kernel(cfg: BlurConfig, rng: np.random.Generator) -> np.ndarray:
    """A kernel drawn as configured (or, with ``sinc_prob``, a sinc kernel)."""
    lo, hi = cfg.kernel_size
    size = int(rng.choice(np.arange(lo, hi + 1, 2)))
    if rng.random() < cfg.sinc_prob:
        top = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, float(rng.uniform(top, math.pi)))
    kinds = sorted(cfg.kinds)
    w = np.array([cfg.kinds[k] for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
    sx = _uniform(rng, cfg.sigma)
    sy = _uniform(rng, cfg.sigma) if kind.endswith("aniso") else sx
    theta = float(rng.uniform(-math.pi, math.pi)) if kind.endswith("aniso") else 0.0
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sx, sy, theta,
                                           _uniform(rng, cfg.beta_generalized))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sx, sy, theta, _uniform(rng, cfg.beta_plateau))
    return gaussian_kernel(size, sx, sy, theta)


def random_noise(img: np.ndarray, cfg: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    gray = bool(rng.random() < cfg.gray_prob)
    if rng.random() < cfg.gaussian_prob:
        return gaussian_noise(img, _uniform(rng, cfg.sigma) / 255.0, rng, gray)
    return poisson_noise(img, _uniform(rng, cfg.poisson_scale), rng, gray)


def _random_resize(img: np.ndarray, cfg: ResizeConfig, rng: np.random.Generator,
                   min_side: int, out_size: tuple[int, int]) -> np.ndarray:
    kind = int(rng.choice(3, p=np.asarray(cfg.probs) / sum(cfg.probs)))
    factor = (_uniform(rng, cfg.up_range), _uniform(rng, cfg.down_range), 1.0)[kind]
    mode = cfg.modes[int(rng.integers(len(cfg.modes)))]
    h, w = img.shape[:2]
    if cfg.relative_to == "output" and kind != 2:
        h, w = out_size
    size = (max(min_side, round(h * factor)), max(min_side, round(w * factor)))
    return resize(img, size, mode)  # type: ignore[arg-type]


def _stage(img: np.ndarray, cfg: StageConfig, rng: np.random.Generator, shuffle: bool,
           min_side: int, out_size: tuple[int, int]) -> np.ndarray:
    ops: list[Callable[[np.ndarray], np.ndarray]] = [
        lambda x: blur(x, random_kernel(cfg.blur, rng)) if rng.random() < cfg.blur.prob else x,
        lambda x: _random_resize(x, cfg.resize, rng, min_side, out_size),
        lambda x: random_noise(x, cfg.noise, rng) if rng.random() < cfg.noise.prob else x,
        lambda x: jpeg(x, int(rng.integers(cfg.jpeg.quality[0], cfg.jpeg.quality[1] + 1)))
        if rng.random() < cfg.jpeg.prob else x,
    ]
    order = rng.permutation(len(ops)) if shuffle else range(len(ops))
    for i in order:
        img = np.clip(ops[i](img), 0.0, 1.0)
    return img


def _final(img: np.ndarray, size: tuple[int, int], cfg: DegradationConfig,
           rng: np.random.Generator) -> np.ndarray:
    """Resize to ``size`` (+ sinc) and JPEG, the two in random order (Real-ESRGAN)."""
    mode = cfg.final_modes[int(rng.integers(len(cfg.final_modes)))]
    sinc = (sinc_kernel(int(rng.choice(np.arange(7, 22, 2))), _uniform(rng, cfg.sinc_cutoff))
            if rng.random() < cfg.final_sinc_prob else None)
    quality = (int(rng.integers(cfg.final_jpeg.quality[0], cfg.final_jpeg.quality[1] + 1))
               if rng.random() < cfg.final_jpeg.prob else None)

    def shrink(x: np.ndarray) -> np.ndarray:
        x = resize(x, size, mode)  # type: ignore[arg-type]
        return np.clip(blur(x, sinc), 0.0, 1.0) if sinc is not None else x

    def compress(x: np.ndarray) -> np.ndarray:
        return jpeg(x, quality) if quality is not None else x

    first, second = (shrink, compress) if rng.random() < 0.5 else (compress, shrink)
    return np.clip(second(np.clip(first(img), 0.0, 1.0)), 0.0, 1.0)


def camera_degrade(img: np.ndarray, size: tuple[int, int], cfg: DegradationConfig,
                   rng: np.random.Generator) -> np.ndarray:
    """One pass through a camera: float ``img`` ``(sH, sW, 3)`` in [0, 1] -> float
    ``size`` LR in [0, 1]: blur (``first.blur``, with its probability) -> resize to
    ``size`` (a mode of ``final_modes``) -> noise (``second.noise``) -> JPEG
    (``final_jpeg``), each clipped to [0, 1]. The mixed evaluation preset is one such
    pass (a Gaussian blur, MATLAB bicubic, Gaussian noise, JPEG); real photos vary in
    each step, which is what the ranges are for."""
    if rng.random() < cfg.first.blur.prob:
        img = np.clip(blur(img, random_kernel(cfg.first.blur, rng)), 0.0, 1.0)
    mode = cfg.final_modes[int(rng.integers(len(cfg.final_modes)))]
    img = np.clip(resize(img, size, mode), 0.0, 1.0)  # type: ignore[arg-type]
    if rng.random() < cfg.second.noise.prob:
        img = np.clip(random_noise(img, cfg.second.noise, rng), 0.0, 1.0)
    if rng.random() < cfg.final_jpeg.prob:
        q = cfg.final_jpeg.quality
        img = jpeg(img, int(rng.integers(q[0], q[1] + 1)))
    return img


def degrade(hr: np.ndarray, scale: int, cfg: DegradationConfig,
            rng: np.random.Generator) -> np.ndarray:
    """The LR image of ``hr`` uint8 ``(sH, sW, 3)`` (sides multiples of ``scale``):
    uint8 ``(H, W, 3)``, degraded as ``cfg`` says with draws from ``rng``."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if rng.random() < cfg.clean_prob:
        return imresize(np.ascontiguousarray(hr), 1.0 / scale)
    x = hr.astype(np.float32) / 255.0
    # drawn only when enabled: configs without it keep their random streams (and weights)
    if cfg.camera_prob > 0.0 and rng.random() < cfg.camera_prob:
        return np.clip(np.rint(camera_degrade(x, (h, w), cfg, rng) * 255.0), 0,
                       255).astype(np.uint8)
    min_side = max(h // 2, 4)
    x = _stage(x, cfg.first, rng, cfg.shuffle, min_side, (h, w))
    if rng.random() < cfg.second_order_prob:
        x = _stage(x, cfg.second, rng, cfg.shuffle, min_side, (h, w))
    x = _final(x, (h, w), cfg, rng)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- presets


def _blur_then_bicubic(hr: np.ndarray, scale: int, sigma: float, rng: np.random.Generator,
                       aniso: bool = False) -> np.ndarray:
    """Gaussian blur at HR (sigma in HR pixels), then the MATLAB bicubic downscale."""
    size = 2 * math.ceil(3 * sigma) + 1
    if aniso:
        sy = sigma * float(rng.uniform(0.5, 1.0))
        k = gaussian_kernel(size, sigma, sy, float(rng.uniform(-math.pi, math.pi)))
    else:
        k = gaussian_kernel(size, sigma)
    return imresize(blur(hr.astype(np.float32) / 255.0, k), 1.0 / scale)


def _preset_jpeg(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    lr = imresize(hr.astype(np.float32) / 255.0, 1.0 / scale)
    return jpeg(lr, int(rng.integers(30, 61)))


def _preset_noise(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    lr = imresize(hr.astype(np.float32) / 255.0, 1.0 / scale)
    return gaussian_noise(lr, float(rng.uniform(5.0, 15.0)) / 255.0, rng)


def _preset_blur(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    return _blur_then_bicubic(hr, scale, float(rng.uniform(0.3, 0.5)) * scale, rng,
                              aniso=bool(rng.random() < 0.5))


def _preset_mixed(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    lr = _blur_then_bicubic(hr, scale, float(rng.uniform(0.2, 0.4)) * scale, rng,
                            aniso=bool(rng.random() < 0.5))
    lr = gaussian_noise(np.clip(lr, 0, 1), float(rng.uniform(2.0, 10.0)) / 255.0, rng)
    return jpeg(lr, int(rng.integers(40, 81)))


PRESETS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "jpeg": _preset_jpeg,
    "noise": _preset_noise,
    "blur": _preset_blur,
    "mixed": _preset_mixed,
}
PRESET_HELP = {
    "jpeg": "MATLAB bicubic downscale, then JPEG quality 30-60",
    "noise": "MATLAB bicubic downscale, then Gaussian colour noise sigma 5-15 levels",
    "blur": "Gaussian blur at HR (sigma 0.3-0.5 x scale px, half anisotropic), then bicubic",
    "mixed": "blur (sigma 0.2-0.4 x scale) -> bicubic -> noise (2-10 levels) -> JPEG 40-80",
}


def preset_seed(preset: str, name: str, scale: int) -> int:
    """The seed of one image's degradation: a stable hash of preset, image name, scale."""
    digest = hashlib.sha256(f"{preset}/{name}/x{scale}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def degrade_preset(hr: np.ndarray, scale: int, preset: str, name: str) -> np.ndarray:
    """The evaluation LR of ``hr`` uint8 ``(sH, sW, C)`` under ``preset``, seeded by the
    image ``name``: uint8 ``(H, W, C)`` (gray images are degraded as RGB, returned gray)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown degradation preset {preset!r}; known: {sorted(PRESETS)}")
    gray = hr.shape[2] == 1
    rgb = np.repeat(hr, 3, axis=2) if gray else hr
    rng = np.random.default_rng(preset_seed(preset, name, scale))
    lr = np.clip(np.rint(np.clip(PRESETS[preset](rgb, scale, rng), 0, 1) * 255.0), 0, 255)
    lr = lr.astype(np.uint8)
    return np.rint(lr.astype(np.float64) @ _LUMA.astype(np.float64))[..., None].astype(
        np.uint8) if gray else lr
