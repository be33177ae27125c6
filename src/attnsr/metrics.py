"""PSNR and SSIM exactly as the papers compute them (RCAN's ``Evaluate_PSNR_SSIM.m``).

The protocol, step by step:

1. SR and HR are uint8 images (a float SR is rounded to uint8 first);
2. colour images are converted with MATLAB's ``rgb2ycbcr`` on ``im2double`` values and the
   Y channel kept, *not rounded*: ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255`` with
   R, G, B in [0, 1]; grayscale images use their gray values ``v / 255``. The script then
   stores Y as ``single`` and multiplies by 255 (in single precision), which we reproduce;
3. ``scale`` pixels are shaved from each border (``Cal_Y_PSNRSSIM(A, B, scale, scale)``);
4. PSNR in float64: ``10 log10(255^2 / mse)``;
5. SSIM is Wang et al.'s ``ssim_index``: 11x11 Gaussian window (sigma 1.5, normalised),
   K1 = 0.01, K2 = 0.03, L = 255, ``filter2(..., 'valid')``, mean of the SSIM map.

``y_channel=False`` scores RGB instead: PSNR from the MSE over all channels, SSIM the mean
of the per-channel SSIMs (BasicSR's convention).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 255.0
_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
# MATLAB rgb2ycbcr on [0, 1] RGB (BT.601, offsets 16/128/128 left out): rows Y, Cb, Cr
RGB_TO_YCBCR = np.array([[65.481, 128.553, 24.966],
                         [-37.797, -74.203, 112.0],
                         [112.0, -93.786, -18.214]]) / 255.0
_Y_COEFFS = RGB_TO_YCBCR[0]


def _as_hwc_uint8(img: Any, name: str) -> np.ndarray:
    """uint8 ``(H, W, C)`` from uint8 ``(H, W)`` / ``(H, W, C)``, or a float image in [0, 1]
    (numpy ``(H, W[, C])`` or torch ``([1,] C, H, W)``), which is rounded as MATLAB does."""
    if hasattr(img, "detach"):
        from attnsr.data.io import to_uint8

        arr = img.detach().double().cpu().numpy()
        arr = arr[0] if arr.ndim == 4 and arr.shape[0] == 1 else arr
        return to_uint8(np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr[..., None])
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"{name}: expected (H, W), (H, W, 1) or (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: expected uint8 or float in [0, 1], got {arr.dtype}")
        from attnsr.data.io import to_uint8

        arr = to_uint8(arr)
    return arr


def _matlab_single_255(x: np.ndarray) -> np.ndarray:
    """``double(single(x) * 255)``: the script keeps Y in single precision, then scales."""
    return (x.astype(np.float32) * np.float32(255.0)).astype(np.float64)


def y_channel(img: np.ndarray) -> np.ndarray:
    """Y of uint8 ``(H, W, 3)`` (or the gray values of ``(H, W, 1)``), float64 on 0..255."""
    x = img.astype(np.float64) / 255.0
    if img.shape[2] == 1:
        return _matlab_single_255(x[..., 0])
    y = x @ _Y_COEFFS + 16.0 / 255.0
    return _matlab_single_255(y)


def _prepare(
    sr: Any, hr: Any, crop_border: int, use_y: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 ``(H', W', C')`` on 0..255, shaved by ``crop_border``."""
    a, b = _as_hwc_uint8(sr, "sr"), _as_hwc_uint8(hr, "hr")
    if a.shape != b.shape:
        raise ValueError(f"sr {a.shape} and hr {b.shape} differ in shape")
    if use_y:
        a, b = y_channel(a)[..., None], y_channel(b)[..., None]
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
    if crop_border > 0:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.size == 0:
        raise ValueError(f"image {b.shape[:2]} is empty after shaving {crop_border} pixels")
    return a, b


def calc_psnr(sr: Any, hr: Any, *, crop_border: int, y_channel: bool = True) -> float:
    """PSNR (dB, peak 255) of ``sr`` against ``hr``, uint8 ``(H, W[, C])`` (see module doc).

    Identical images give ``inf``.
    """
    return _psnr(*_prepare(sr, hr, crop_border, y_channel))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)`` as its separable 1-D factor (sums to 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``filter2(g g^T, x, 'valid')`` over the last two axes of float64 ``x`` (the window
    is separable and symmetric)."""
    rows = sliding_window_view(x, g.size, axis=-2) @ g  # (..., H - k + 1, W)
    return sliding_window_view(rows, g.size, axis=-1) @ g  # (..., H - k + 1, W - k + 1)


def ssim_index(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s ``ssim_index`` of two 2-D float64 images on 0..255 (mean SSIM map)."""
    if min(a.shape) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}, "
                         f"got {a.shape[1]}x{a.shape[0]}")
    c1, c2 = (_SSIM_K1 * _SSIM_L) ** 2, (_SSIM_K2 * _SSIM_L) ** 2
    mu1, mu2, aa, bb, ab = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), gaussian_window())
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = aa - mu1_sq, bb - mu2_sq, ab - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def calc_ssim(sr: Any, hr: Any, *, crop_border: int, y_channel: bool = True) -> float:
    """SSIM of ``sr`` against ``hr`` (see module doc); RGB: mean over the channels."""
    return _ssim(*_prepare(sr, hr, crop_border, y_channel))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([ssim_index(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def evaluate_pair(sr: Any, hr: Any, scale: int, *, y_channel: bool = True) -> tuple[float, float]:
    """``(psnr, ssim)`` of ``sr`` against ``hr`` with the papers' protocol (shave ``scale``).

    ``sr`` and ``hr``: uint8 ``(H, W, 3)`` / ``(H, W)`` / ``(H, W, 1)``, or float images in
    [0, 1] (numpy HWC or torch ``([1,] C, H, W)``), rounded to uint8 first.
    """
    a, b = _prepare(sr, hr, scale, y_channel)
    return _psnr(a, b), _ssim(a, b)


def blockiness(img: Any, block: int = 8, grid_scale: int = 1) -> float:
    """Block-border gradient ratio of ``img``: JPEG's visible 8x8 block edges.

    ``img``: uint8 ``(H, W[, C])`` or a float image in [0, 1] (rounded as above); scored on
    the luma (Y, 0..255). The block grid has period ``block * grid_scale`` pixels: a JPEG
    block border between input columns ``8k - 1`` and ``8k`` lies between output columns
    ``8ks - 1`` and ``8ks`` after a x``s`` upscale (``grid_scale=s``). Returns the mean
    absolute horizontal + vertical luma difference across the grid lines divided by the mean
    absolute difference everywhere else: about 1 without block edges, > 1 with them
    (1.0 for a flat image).

    Raises:
        ValueError: a period below 2, or an image without any grid line inside.
    """
    period = block * grid_scale
    if block < 1 or grid_scale < 1 or period < 2:
        raise ValueError(f"blockiness: block * grid_scale must be >= 2, got {block} * {grid_scale}")
    y = y_channel(_as_hwc_uint8(img, "img"))  # (H, W) on 0..255
    # diff index j spans pixels j and j + 1: a border when j + 1 is a multiple of period.
    on_x = np.arange(1, y.shape[1]) % period == 0  # (W - 1,)
    on_y = np.arange(1, y.shape[0]) % period == 0  # (H - 1,)
    if not (on_x.any() or on_y.any()):
        raise ValueError(f"blockiness: image {y.shape[1]}x{y.shape[0]} has no block border "
                         f"(period {period} px)")
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))  # (H, W-1), (H-1, W)
    border = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()]).mean()
    inner = np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()]).mean()
    if inner == 0:
        return 1.0 if border == 0 else float("inf")
    return float(border / inner)
