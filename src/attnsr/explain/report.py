"""``explain_image``: run a model once with an :class:`AttentionRecorder`, compute LAM,
and write the figures plus ``explain.json`` (what ``attnsr explain`` does)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attnsr.data.resize import imresize
from attnsr.errors import ConfigError
from attnsr.explain import figures
from attnsr.explain.capture import KINDS, AttentionRecorder, CapturedMap
from attnsr.explain.lam import Box, LAMConfig, LAMResult, local_attribution_map

log = logging.getLogger(__name__)

SSIM_MIN_SIDE = 11  # the SSIM window: smaller crops have no SSIM


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    """What to explain.

    Attributes:
        query: ``(x, y)`` input pixel whose attention distribution is shown (default:
            the input pixel under the patch centre).
        patch: ``(x, y, w, h)`` output patch (SR pixels) for the zoom and LAM (default:
            ``16 x 16`` at the centre).
        blocks: fnmatch patterns of block names (or indices into the recorded maps of
            each kind) to draw; empty: all (at most ``max_panels`` per figure).
        lam: LAM settings; None skips LAM.
        max_panels: panels per overlay figure when ``blocks`` is empty.
    """

    query: tuple[int, int] | None = None
    patch: Box | None = None
    blocks: tuple[str, ...] = ()
    lam: LAMConfig | None = LAMConfig(steps=32, context=32)
    max_panels: int = 12


# ------------------------------------------------------------------------- inputs


def default_patch(sr_size: tuple[int, int], side: int = 16) -> Box:
    """A ``side x side`` patch at the centre of an SR image of ``(H, W)``."""
    H, W = sr_size
    w, h = min(side, W), min(side, H)
    return (W - w) // 2, (H - h) // 2, w, h


def check_geometry(lr_size: tuple[int, int], scale: int, opts: ExplainOptions) -> ExplainOptions:
    """Fill the default patch / query and check both lie inside the images."""
    H, W = lr_size
    patch = opts.patch or default_patch((H * scale, W * scale))
    x, y, w, h = patch
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > W * scale or y + h > H * scale:
        raise ConfigError(f"--patch {x},{y},{w},{h} is outside the {W * scale}x{H * scale} "
                          "output (x, y, width, height in output pixels)")
    query = opts.query or ((x + w // 2) // scale, (y + h // 2) // scale)
    if not (0 <= query[0] < W and 0 <= query[1] < H):
        raise ConfigError(f"--query {query[0]},{query[1]} is outside the {W}x{H} input "
                          "(x, y in input pixels)")
    return replace(opts, patch=patch, query=query)


def match_hr(hr: np.ndarray, lr_size: tuple[int, int], scale: int, where: str) -> np.ndarray:
    """``hr`` cropped to ``scale`` x the LR size (as benchmark HR images are)."""
    H, W = lr_size[0] * scale, lr_size[1] * scale
    if hr.shape[0] < H or hr.shape[1] < W:
        raise ConfigError(f"{where}: HR image {hr.shape[1]}x{hr.shape[0]} is smaller than "
                          f"{scale} x the input ({W}x{H})")
    hr = hr[:H, :W]
    return np.repeat(hr, 3, axis=2) if hr.shape[2] == 1 else hr[..., :3]


def to_tensor(image: np.ndarray, channels: int) -> Tensor:
    """``(H, W, C)`` in [0, 1] -> ``(1, channels, H, W)`` float32 (gray repeated to RGB)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    if t.shape[0] == 1 and channels == 3:
        t = t.expand(3, -1, -1)
    return t[:channels].unsqueeze(0).contiguous()


def to_image(t: Tensor) -> np.ndarray:
    """``(1, C, H, W)`` -> ``(H, W, C)`` float64 in [0, 1]."""
    return t[0].detach().clamp(0, 1).permute(1, 2, 0).double().cpu().numpy()


# ---------------------------------------------------------------------- metrics


def _metrics(sr: np.ndarray, hr: np.ndarray, shave: int) -> dict[str, float | None]:
    from attnsr.metrics import calc_psnr, calc_ssim

    psnr = calc_psnr(sr, hr, crop_border=shave)
    side = min(sr.shape[:2]) - 2 * shave
    ssim = calc_ssim(sr, hr, crop_border=shave) if side >= SSIM_MIN_SIDE else None
    return {"psnr": _finite(psnr), "ssim": ssim}


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON has no inf


def image_metrics(images: Mapping[str, np.ndarray], hr: np.ndarray, patch: Box,
                  scale: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """PSNR/SSIM (Y channel) of each image, whole (shaving ``scale``) and of the patch."""
    whole, crop = {}, {}
    x, y, w, h = patch
    for label, img in images.items():
        whole[label] = _metrics(img, hr, scale)
        crop[label] = _metrics(img[y : y + h, x : x + w], hr[y : y + h, x : x + w], 0)
    return whole, crop


# --------------------------------------------------------------------- summaries


def select(names: Sequence[str], patterns: Sequence[str], limit: int) -> list[str]:
    """Names matching any pattern (fnmatch, or an integer index), else evenly ``limit``."""
    if not patterns:
        return figures.pick_evenly(names, limit)
    out = []
    for i, name in enumerate(names):
        for p in patterns:
            if (p.lstrip("-").isdigit() and int(p) % len(names) == i) or fnmatchcase(name, p):
                out.append(name)
                break
    return out


def _query_stats(m: CapturedMap) -> dict[str, Any]:
    """Peak, mean distance from the query and entropy of a query distribution."""
    p = m.tensor[0, 0].double()
    H, W = p.shape
    qx, qy = m.info["query"]
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    dist = ((xs - qx) ** 2 + (ys - qy) ** 2).double().sqrt()
    peak = int(p.argmax())
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"layer": m.layer, "query": list(m.info["query"]),
            "peak": [peak % W, peak // W], "peak_prob": float(p.max()),
            "mean_distance_px": float((p * dist).sum()), "entropy_nats": float(ent),
            "sum": float(p.sum())}


def attention_summary(maps: Mapping[str, CapturedMap]) -> dict[str, Any]:
    """JSON-ready numbers of every captured map (batch item 0)."""
    out: dict[str, dict[str, Any]] = {"channel": {}, "spatial": {}, "query": {}}
    for name, m in maps.items():
        t = m.tensor[0]
        if m.kind == "channel":
            out["channel"][name] = {"layer": m.layer, "mean": float(t.mean()),
                                    "std": float(t.std()) if t.numel() > 1 else 0.0,
                                    "weights": [round(float(v), 6) for v in t]}
        elif m.kind == "spatial":
            out["spatial"][name] = {"layer": m.layer, "shape": list(t.shape),
                                    "mean": float(t.mean()), "std": float(t.std()),
                                    "min": float(t.min()), "max": float(t.max())}
        else:
            out["query"][name] = _query_stats(m)
    return out


def lam_summary(r: LAMResult) -> dict[str, Any]:
    return {"patch": list(r.patch), "region": list(r.region), "steps": r.steps,
            "gini": r.gini, "diffusion_index": r.diffusion_index,
            "objective": r.objective, "baseline_objective": r.baseline_objective,
            "attribution_sum": r.total, "completeness_error": r.completeness_error}


# ----------------------------------------------------------------------- figures


def _maps_2d(maps: Mapping[str, CapturedMap], names: Sequence[str],
             size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Channel-mean ``(H, W)`` of each map, cropped to the input ``size`` (padding off)."""
    H, W = size
    return {n: maps[n].tensor[0].mean(dim=0)[:H, :W].numpy() for n in names}


def attention_figures(out: Path, lr: np.ndarray, maps: Mapping[str, CapturedMap],
                      opts: ExplainOptions, model_name: str) -> list[Path]:
    """Channel heatmap, spatial overlays and query-distribution overlays (those present)."""
    paths = []
    size = lr.shape[:2]
    kinds = {k: [n for n, m in maps.items() if m.kind == k] for k in KINDS}
    if kinds["channel"]:
        w = {n: maps[n].tensor[0].numpy() for n in kinds["channel"]}
        paths.append(figures.channel_heatmap(
            out / "channel_attention.png", w,
            title=f"{model_name}: channel attention ({len(w)} blocks)"))
    spatial = select(kinds["spatial"], opts.blocks, opts.max_panels)
    if spatial:
        paths.append(figures.overlay_grid(
            out / "spatial_attention.png", lr, _maps_2d(maps, spatial, size),
            title=f"{model_name}: spatial / pixel attention (mean over channels; "
                  "colour range per panel)",
            value_label="gate value"))
    query = select(kinds["query"], opts.blocks, opts.max_panels)
    if query:
        paths.append(figures.overlay_grid(
            out / "query_attention.png", lr, _maps_2d(maps, query, size),
            title=f"{model_name}: attention of query pixel {opts.query} (cross)",
            value_label="attention probability", cmap="viridis", query=opts.query,
            hide_zero=True))
    return paths


# -------------------------------------------------------------------------- main


class _Clock:
    """Wall and CPU (all threads of this process) seconds of consecutive stages."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t, self._c = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.wall[stage], self.cpu[stage] = t - self._t, c - self._c
        self._t, self._c = t, c



def explain_image(
    desc: Any, lr_image: np.ndarray, out: Path, opts: ExplainOptions,
    hr_image: np.ndarray | None = None, hr_name: str = "HR",
) -> dict[str, Any]:
    """Explain ``desc`` (a :class:`~attnsr.runner.Runner`) on ``lr_image``
    ``(H, W, C)`` in [0, 1]: write the figures into ``out`` and return the numbers
    (also written to ``out/explain.json``)."""
    s, size = desc.scale, lr_image.shape[:2]
    opts = check_geometry(size, s, opts)
    hr = match_hr(hr_image, size, s, hr_name) if hr_image is not None else None
    lr = to_tensor(lr_image, desc.in_channels).to(desc.device)
    clock = _Clock()
    with AttentionRecorder(desc, query=opts.query, channel_mean=True) as rec:
        sr_t = desc(lr)
    clock.lap("sr_with_capture")
    lr_np, sr = to_image(lr), to_image(sr_t)
    images = {"Bicubic": np.clip(imresize(lr_np, s), 0, 1), "SR": sr}
    report: dict[str, Any] = {
        "model": {"name": desc.name, "arch": desc.arch, "scale": s, "source": desc.source},
        "input_size": [size[1], size[0]], "query": list(opts.query), "patch": list(opts.patch),
        "attention": attention_summary(rec.maps),
    }
    crop_m = None
    if hr is not None:
        report["metrics"], crop_m = image_metrics(images, hr, opts.patch, s)
        report["patch_metrics"] = crop_m
        images["HR"] = hr
    paths = [figures.comparison_figure(out / "comparison.png", images, opts.patch, crop_m,
                                       title=f"{desc.name} x{s}")]
    paths += attention_figures(out, lr_np, rec.maps, opts, desc.name)
    clock.lap("figures")
    if opts.lam is not None:
        res = local_attribution_map(desc, lr, opts.patch, opts.lam)
        clock.lap("lam")
        report["lam"] = lam_summary(res)
        paths.append(figures.lam_figure(
            out / "lam.png", lr_np, sr, res.saliency.numpy(), patch=opts.patch,
            region=res.region, scale=s, diffusion_index=res.diffusion_index,
            title=f"{desc.name}: local attribution map ({res.steps} steps)"))
        clock.lap("lam_figure")
    report["timing_s"], report["cpu_s"] = clock.wall, clock.cpu
    report["figures"] = [p.name for p in paths]
    (out / "explain.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
