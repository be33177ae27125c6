"""Figures of attention maps and attributions (matplotlib, Agg; no pyplot state).

Every function takes numpy images ``(H, W, 3)`` (or ``(H, W)``) in [0, 1], writes one PNG
and returns its path. Every panel has a title, labelled axes and, where colour encodes a
value, a colour bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

Box = tuple[int, int, int, int]  # x, y, width, height
DPI = 110
PATCH_COLOUR = "#ff2d2d"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg canvas: no GUI backend, no global pyplot state
    return fig


def _colorbar(fig: Figure, im: object, ax: Axes, label: str) -> None:
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _gray(image: np.ndarray) -> np.ndarray:
    """Luma ``(H, W)`` of an RGB or gray image, for a neutral backdrop under overlays."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return image[..., :3] @ np.array([0.299, 0.587, 0.114])


def _show(ax: Axes, image: np.ndarray, title: str, *, axis_labels: bool = True,
          origin: tuple[int, int] = (0, 0)) -> None:
    """``image`` in [0, 1] with its top-left pixel at ``origin`` ``(x, y)``."""
    x0, y0 = origin
    h, w = image.shape[:2]
    ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None,
              vmin=0, vmax=1, interpolation="nearest",
              extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
    ax.set_title(title, fontsize=8.5)
    if axis_labels:
        ax.set_xlabel("x (px)", fontsize=8)
        ax.set_ylabel("y (px)", fontsize=8)
    ax.tick_params(labelsize=7)


def _box(ax: Axes, box: Box, *, colour: str = PATCH_COLOUR, style: str = "-") -> None:
    x, y, w, h = box
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=colour,
                           linewidth=2.0, linestyle=style))


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return image[y : y + h, x : x + w]


def _fmt_metrics(m: Mapping[str, float | None] | None) -> str:
    if not m:
        return ""
    psnr, ssim = m.get("psnr"), m.get("ssim")
    parts = [f"PSNR {psnr:.2f} dB" if psnr is not None else "",
             f"SSIM {ssim:.4f}" if ssim is not None else ""]
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------- comparison


def comparison_figure(
    path: Path, images: Mapping[str, np.ndarray], patch: Box,
    crop_metrics: Mapping[str, Mapping[str, float | None]] | None = None, title: str = "",
) -> Path:
    """Full images (top row, the patch boxed) and the zoomed patch of each (bottom row),
    with the crop's PSNR/SSIM under each zoom when ``crop_metrics`` has it.

    ``images``: label -> ``(sH, sW, 3)`` in [0, 1], all the same size (``Bicubic``, ``SR``,
    ``HR``); ``patch``: ``(x, y, w, h)`` in their pixels.
    """
    n = len(images)
    fig = _figure(3.2 * n, 6.6)
    axes = fig.subplots(2, n, squeeze=False)
    for i, (label, img) in enumerate(images.items()):
        _show(axes[0, i], img, label)
        _box(axes[0, i], patch)
        _show(axes[1, i], _crop(img, patch), f"{label}: patch {patch[2]}x{patch[3]}",
              origin=patch[:2])
        metrics = (crop_metrics or {}).get(label)
        if metrics:
            axes[1, i].set_xlabel(f"x (px)\n{_fmt_metrics(metrics)}", fontsize=8)
    fig.suptitle(title or "Super-resolution result and zoomed patch", fontsize=11)
    return _save(fig, path)


# -------------------------------------------------------------- channel heatmap


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def channel_heatmap(path: Path, weights: Mapping[str, np.ndarray], title: str = "") -> Path:
    """Blocks x channels heatmap of channel-attention weights (one row per block, in
    call order; rows of fewer channels are padded blank)."""
    names = list(weights)
    width = max(len(v) for v in weights.values())
    grid = np.full((len(names), width), np.nan)
    for r, name in enumerate(names):
        grid[r, : len(weights[name])] = weights[name]
    fig = _figure(min(4 + width * 0.09, 16), min(2.4 + len(names) * 0.13, 14))
    ax = fig.subplots()
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                   interpolation="nearest")
    step = max(1, math.ceil(len(names) / 30))  # at most ~30 labelled rows stay legible
    ax.set_yticks(range(0, len(names), step), [_short(n) for n in names[::step]], fontsize=7)
    ax.set_xlabel("channel", fontsize=9)
    ax.set_ylabel("attention block", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.colorbar(im, ax=ax, label="channel weight (sigmoid output)", shrink=0.9)
    ax.set_title(title or f"Channel attention: {len(names)} blocks x {width} channels",
                 fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------- overlays


def _grid(n: int, cols: int = 4) -> tuple[int, int]:
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def overlay_grid(
    path: Path, image: np.ndarray, maps: Mapping[str, np.ndarray], *, title: str,
    value_label: str, cmap: str = "inferno", query: tuple[int, int] | None = None,
    vmin: float | None = None, vmax: float | None = None, alpha: float = 0.6,
    hide_zero: bool = False,
) -> Path:
    """One panel per map: the gray input under the map (``(H, W)``, same pixel grid as
    ``image``), with a colour bar each. ``query`` ``(x, y)`` is marked with a cross.
    ``vmin``/``vmax`` fix the colour range of all panels (None: per panel);
    ``hide_zero`` leaves pixels where the map is (about) 0 uncoloured."""
    rows, cols = _grid(len(maps))
    fig = _figure(3.4 * cols, 3.0 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    gray = _gray(image)
    for ax, (name, m) in zip(axes.ravel(), maps.items(), strict=False):
        _show(ax, gray, _short(name, 40))
        if hide_zero:  # e.g. outside the query's window: show the image, not a flat colour
            m = np.ma.masked_less_equal(m, 1e-6 * max(float(np.max(m)), 1e-30))
        im = ax.imshow(m, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        if query is not None:
            ax.plot(*query, marker="+", color="cyan", markersize=11, markeredgewidth=2)
        _colorbar(fig, im, ax, value_label)
    for ax in axes.ravel()[len(maps) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------- LAM


def lam_figure(
    path: Path, lr: np.ndarray, sr: np.ndarray, saliency: np.ndarray, *, patch: Box,
    region: Box, scale: int, diffusion_index: float, title: str = "",
) -> Path:
    """Three panels: the SR output with the analysed patch; the normalised |attribution|
    over the input; the attribution overlaid on the input (patch footprint and LAM's
    context region boxed)."""
    fig = _figure(11.0, 4.0)
    a0, a1, a2 = fig.subplots(1, 3)
    _show(a0, sr, f"SR output, patch {patch[2]}x{patch[3]}")
    _box(a0, patch)
    im = a1.imshow(saliency, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    a1.set_title(f"|attribution| (LAM), DI = {diffusion_index:.2f}", fontsize=9)
    a1.set_xlabel("x (input px)", fontsize=8)
    a1.set_ylabel("y (input px)", fontsize=8)
    a1.tick_params(labelsize=7)
    _colorbar(fig, im, a1, "normalised |attribution|")
    _show(a2, _gray(lr), "attribution over the input")
    a2.set_xlabel("x (input px)", fontsize=8)
    a2.set_ylabel("y (input px)", fontsize=8)
    im2 = a2.imshow(np.sqrt(saliency), cmap="jet", alpha=0.55, vmin=0, vmax=1,
                    interpolation="bilinear")
    _colorbar(fig, im2, a2, "sqrt(normalised |attribution|)")
    foot = (patch[0] / scale, patch[1] / scale, patch[2] / scale, patch[3] / scale)
    _box(a2, foot)  # type: ignore[arg-type]
    if region != (0, 0, lr.shape[1], lr.shape[0]):
        _box(a2, region, colour="white", style="--")
    fig.suptitle(title or "Local attribution map", fontsize=11)
    return _save(fig, path)


def pick_evenly(names: Sequence[str], limit: int) -> list[str]:
    """At most ``limit`` of ``names``, evenly spaced, first and last included."""
    if len(names) <= limit:
        return list(names)
    idx = np.unique(np.linspace(0, len(names) - 1, limit).round().astype(int))
    return [names[i] for i in idx]
