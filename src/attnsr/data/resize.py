"""MATLAB-exact bicubic ``imresize``.

Reproduces MATLAB's ``imresize(img, scale)`` / ``imresize(img, [h w])`` with the default
``'bicubic'`` method and antialiasing:

- cubic kernel with ``a = -0.5`` and support 4;
- when downscaling, the kernel is stretched by ``1 / scale`` (``h(x) = scale * cubic(scale * x)``),
  which is MATLAB's antialiasing;
- the source coordinate of output pixel ``x`` (1-based) is
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
- out-of-range taps are mirrored (``aux = [1:n, n:-1:1]``), weights are normalised to sum to 1
  and tap columns whose weights are all zero are dropped (MATLAB's ``contributions``);
- the output size is ``ceil(in * scale)``;
- the two 1-D passes run in MATLAB's order: the dimension with the smaller scale first
  (rows first on ties);
- integer inputs (``uint8``) are rounded (half away from zero) and clipped back to the
  integer type after *each* pass, as ``imresizemex`` does. Float inputs stay float.

Three paths share the same weight/index tables (computed once in float64 and cached):
numpy integer, numpy float (float64 math, result in the input's float dtype), and torch
(``(B, C, H, W)`` or ``(C, H, W)`` float, any device, differentiable, no rounding).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TypeVar, overload

import numpy as np
import torch
from torch import Tensor

_KERNEL_WIDTH = 4.0
# CPU torch passes use a dense matmul while in_len <= this x taps (measured crossover)
_DENSE_TAPS_FACTOR = 128

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, Tensor)


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, ``a = -0.5``) evaluated at ``x`` (float64)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


@lru_cache(maxsize=256)
def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: the taps of each output sample along one dimension.

    Returns ``(weights, indices)``, both ``(out_len, P)``: float64 weights summing to 1 per
    row, and 0-based int64 source indices (mirrored at the borders). Cached and read-only.
    """
    antialias = scale < 1
    width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may be out of range
    dist = u - idx
    weights = scale * cubic(scale * dist) if antialias else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    indices = np.ascontiguousarray(indices[:, keep])
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _plan(
    in_hw: tuple[int, int], scale: float | None, output_size: tuple[int, int] | None
) -> tuple[tuple[float, float], tuple[int, int], tuple[int, int]]:
    """Per-dimension scales, the output size and MATLAB's pass order (0 = rows, 1 = columns)."""
    if (scale is None) == (output_size is None):
        raise ValueError("imresize: give exactly one of scale or output_size")
    if output_size is not None:
        out_hw = (int(output_size[0]), int(output_size[1]))
        if min(out_hw) < 1:
            raise ValueError(f"imresize: output_size must be positive, got {output_size}")
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    else:
        if not scale or scale <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_hw = (math.ceil(in_hw[0] * scale), math.ceil(in_hw[1] * scale))
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    return scales, out_hw, order


def _resize_dim_numpy(x: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """One 1-D pass over ``axis`` of float64 ``x``: taps summed in MATLAB's order.

    The pass runs on a contiguous copy with ``axis`` first, so every tap gathers whole rows.
    """
    weights, indices = contributions(x.shape[axis], out_len, scale)
    moved = np.moveaxis(x, axis, 0)
    rows = np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
    out = np.zeros((out_len, rows.shape[1]), dtype=np.float64)
    buf = np.empty_like(out)
    for p in range(weights.shape[1]):
        np.take(rows, indices[:, p], axis=0, out=buf)
        buf *= weights[:, p : p + 1]
        out += buf
    return np.moveaxis(out.reshape(out_len, *moved.shape[1:]), 0, axis)


def _round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's float -> integer conversion: round half away from zero, saturate.

    Saturating first is equivalent (the bounds are integers) and lets unsigned types use a
    single in-place ``floor(x + 0.5)``.
    """
    info = np.iinfo(dtype)
    x = np.clip(x, info.min, info.max)
    if info.min == 0:
        x += 0.5
        return np.floor(x, out=x).astype(dtype)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(dtype)


def _imresize_numpy(
    img: np.ndarray, scale: float | None, output_size: tuple[int, int] | None
) -> np.ndarray:
    """numpy ``(H, W)`` or ``(H, W, C)``; integer inputs are rounded after each pass."""
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected (H, W) or (H, W, C), got shape {img.shape}")
    is_int = np.issubdtype(img.dtype, np.integer)
    if not is_int and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"imresize: unsupported dtype {img.dtype}")
    scales, out_hw, order = _plan(img.shape[:2], scale, output_size)
    x = img
    for axis in order:
        x = _resize_dim_numpy(x.astype(np.float64), axis, out_hw[axis], scales[axis])
        if is_int:
            x = _round_to(x, img.dtype)
    return x if is_int else x.astype(img.dtype)


@lru_cache(maxsize=64)
def dense_weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The 1-D resize as a float64 ``(out_len, in_len)`` matrix (mirrored taps summed)."""
    weights, indices = contributions(in_len, out_len, scale)
    dense = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(dense, (np.arange(out_len)[:, None], indices), weights)
    dense.setflags(write=False)
    return dense


def _resize_dim_torch(x: Tensor, dim: int, out_len: int, scale: float) -> Tensor:
    """One differentiable 1-D pass over ``dim`` (-2 rows, -1 columns) of ``(..., H, W)``.

    A dense ``(out, in)`` matmul where that is cheap (accelerators; short or strongly
    downscaled dimensions), else tap-by-tap row gathers (no ``P``-times larger buffer).
    """
    weights, indices = contributions(x.shape[dim], out_len, scale)
    if x.device.type != "cpu" or x.shape[dim] <= _DENSE_TAPS_FACTOR * weights.shape[1]:
        d = torch.from_numpy(dense_weights(x.shape[dim], out_len, scale).copy()).to(x)
        return torch.matmul(d, x) if dim == -2 else torch.matmul(x, d.T)
    w = torch.from_numpy(weights.copy()).to(device=x.device, dtype=x.dtype)
    idx = torch.from_numpy(indices.copy()).to(device=x.device)
    x = (x.transpose(dim, -2) if dim != -2 else x).contiguous()
    out = x.index_select(-2, idx[:, 0]) * w[:, 0, None]
    for p in range(1, w.shape[1]):
        out = out + x.index_select(-2, idx[:, p]) * w[:, p, None]
    return out.transpose(dim, -2) if dim != -2 else out


def _imresize_torch(
    img: Tensor, scale: float | None, output_size: tuple[int, int] | None
) -> Tensor:
    """torch ``(B, C, H, W)`` or ``(C, H, W)`` float; no rounding."""
    if img.ndim not in (3, 4):
        raise ValueError(f"imresize: expected (B, C, H, W) or (C, H, W), got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"imresize: torch input must be floating point, got {img.dtype}")
    scales, out_hw, order = _plan(tuple(img.shape[-2:]), scale, output_size)
    x = img
    for axis in order:
        x = _resize_dim_torch(x, axis - 2, out_hw[axis], scales[axis])
    return x.contiguous()


@overload
def imresize(img: np.ndarray, scale: float | None = None, *,
             output_size: tuple[int, int] | None = None) -> np.ndarray: ...
@overload
def imresize(img: Tensor, scale: float | None = None, *,
             output_size: tuple[int, int] | None = None) -> Tensor: ...
def imresize(img, scale=None, *, output_size=None):  # type: ignore[no-untyped-def]
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiased) for numpy arrays and tensors.

    Args:
        img: numpy ``(H, W)`` / ``(H, W, C)`` (integer: MATLAB's rounded integer path;
            float: float64 math, same dtype out) or a float tensor ``(B, C, H, W)`` /
            ``(C, H, W)`` on any device (differentiable).
        scale: resize factor; the output is ``ceil(in * scale)`` on each side.
        output_size: ``(out_h, out_w)`` instead of ``scale``.

    Returns:
        The resized image, same kind, layout and dtype as ``img``.
    """
    if isinstance(img, Tensor):
        return _imresize_torch(img, scale, output_size)
    return _imresize_numpy(np.asarray(img), scale, output_size)
