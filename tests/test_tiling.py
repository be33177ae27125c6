"""Tiled inference: layout, blend weights, tiled == whole for local models, a bounded
error and no visible seams for global models, bounded memory."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.descriptor import describe
from attnsr.inference.memory import TensorMemoryProbe, activation_bytes_per_pixel, auto_tile_size
from attnsr.inference.tiling import (
    axis_positions,
    blend_margin,
    blend_weights,
    default_overlap,
    plan_tiles,
    tiled_forward,
)
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import create_model, list_models
from seams import seam_positions, seam_ratio


# --------------------------------------------------------------------------- tiny models
@dataclass(frozen=True, kw_only=True)
class TinyConfig:
    scale: int = 2
    in_channels: int = 3
    feats: int = 8
    n_convs: int = 3
    window: int = 1
    global_pool: bool = False


class TinyConvSR(SRModel):
    """``n_convs`` 3x3 convs + pixel shuffle: receptive field ``n_convs`` LR pixels.

    ``window > 1`` adds each window's mean feature (like window attention: depends on
    the window grid); ``global_pool`` adds RCAN-style channel attention (global)."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.feats, config.scale
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(config.n_convs - 2))
        self.ca = nn.Sequential(nn.Conv2d(c, c, 1), nn.Sigmoid())
        self.tail = nn.Sequential(nn.Conv2d(c, 3 * s * s, 3, padding=1), nn.PixelShuffle(s))

    def forward(self, lr: Tensor) -> Tensor:
        x = F.relu(self.head(lr))
        for conv in self.body:
            x = F.relu(conv(x))
        if self.config.window > 1:
            w = self.config.window
            x = x + F.interpolate(F.avg_pool2d(x, w), scale_factor=w, mode="nearest")
        if self.config.global_pool:
            x = x * self.ca(x.mean(dim=(2, 3), keepdim=True))
        bicubic = F.interpolate(lr, scale_factor=self.config.scale, mode="bicubic")
        # a small residual on top of an interpolation, as trained SR networks produce
        return bicubic + 0.1 * self.tail(x)

    def traits(self) -> ModelTraits:
        cfg = self.config
        return ModelTraits(multiple_of=cfg.window, receptive_field=cfg.n_convs + 2 + cfg.window,
                           has_global_ops=cfg.global_pool)


def tiny(**kw: object) -> object:
    torch.manual_seed(0)
    return describe(TinyConvSR(TinyConfig(**kw)))


def test_tiny_model_receptive_field_is_as_declared() -> None:
    """Changing one LR pixel changes only outputs within the declared radius."""
    d = tiny(n_convs=3)
    lr = torch.rand(1, 3, 32, 32)
    lr2 = lr.clone()
    lr2[..., 16, 16] += 0.5
    diff = (d.run(lr2) - d.run(lr)).abs().sum(1)[0] > 0
    ys, xs = torch.nonzero(diff, as_tuple=True)
    radius = max((ys // 2 - 16).abs().max(), (xs // 2 - 16).abs().max())
    assert 0 < int(radius) <= d.traits.receptive_field


# --------------------------------------------------------------------------- layout
def test_axis_positions_last_tile_flush() -> None:
    assert axis_positions(100, 32, 24) == [0, 24, 48, 68]
    assert axis_positions(32, 32, 24) == [0]
    assert axis_positions(20, 32, 24) == [0]


def test_plan_rounds_to_multiple_and_covers() -> None:
    plan = plan_tiles(50, 70, 30, 10, multiple=8)
    assert plan.padded == (56, 72)
    assert plan.tile_h == plan.tile_w == 24 and plan.overlap == 16
    for pos, n in ((plan.ys, 56), (plan.xs, 72)):
        assert all(p % 8 == 0 for p in pos)
        assert pos[0] == 0 and pos[-1] + 24 == n
    one = plan_tiles(50, 70, 0, 10)
    assert (one.tile_h, one.tile_w, one.ys, one.xs) == (50, 70, (0,), (0,))


def test_blend_weights_fade_and_margins() -> None:
    positions, tile, s = [0, 24, 40], 32, 2
    ws = blend_weights(positions, tile, s)
    total = torch.zeros(72 * s, dtype=torch.float64)
    for p, w in zip(positions, ws, strict=True):
        total[p * s : (p + tile) * s] += w
    assert torch.allclose(total, torch.ones_like(total))  # cross-fades sum to 1
    assert ws[0][0] == 1 and ws[-1][-1] == 1  # image borders keep full weight
    o = (0 + tile - 24) * s
    assert torch.all(ws[0][tile * s - o // 4 :] == 0)  # outer quarter next to an edge
    assert torch.all(ws[1][: o // 4] == 0)


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("h", "w", "scale", "tile", "overlap"),
    [(37, 53, 2, 32, 20), (40, 40, 3, 28, 24), (45, 71, 2, 36, 28), (23, 90, 4, 64, 20)],
)
def test_tiled_equals_whole_for_local_model(
    h: int, w: int, scale: int, tile: int, overlap: int
) -> None:
    d = tiny(scale=scale, n_convs=4)  # receptive field <= 5: overlap // 4 covers it
    lr = torch.rand(1, 3, h, w)
    whole = d(lr)
    tiled = tiled_forward(d, lr, scale, tile, overlap)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) <= 1e-5


def test_tiled_equals_whole_for_window_model() -> None:
    """Window-aligned models: tiles start on the window grid and the image is padded as
    a whole-image forward pads it, so the result is exact too."""
    d = tiny(window=8, n_convs=3)
    lr = torch.rand(1, 3, 77, 99)  # not multiples of 8
    whole = d(lr)
    tiled = tiled_forward(d, lr, 2, 64, 48)
    assert float((tiled - whole).abs().max()) <= 1e-5


ZOO_LOCAL = ("edsr_baseline", "pan", "attnsr_lite", "swinir_light", "dscf", "span")


def _tiny_zoo_model(name: str) -> nn.Module:
    """Preset ``name`` with its module's ``TINY`` overrides (random weights, x2)."""
    import importlib

    from attnsr.models.registry import get_preset

    if name not in list_models():
        pytest.skip(f"{name} is not registered")
    module = importlib.import_module(f"attnsr.models.{get_preset(name).arch}")
    overrides = {**getattr(module, "TINY", {})}
    if name == "attnsr_lite":
        overrides = {"channels": 8, "n_blocks": 2}
    torch.manual_seed(0)
    return create_model(name, scale=2, **overrides)


@pytest.mark.parametrize("name", ZOO_LOCAL)
def test_tiled_equals_whole_for_local_zoo_models(name: str) -> None:
    """With the default overlap (from the declared receptive field) tiling is exact."""
    d = describe(_tiny_zoo_model(name))
    assert not d.has_global_ops
    m = d.multiple_of
    overlap = default_overlap(d)
    tile = overlap + 4 * m
    lr = torch.rand(1, 3, tile + tile // 2 + 5, tile + 3)
    whole = d(lr)
    tiled = tiled_forward(d, lr, 2, tile, overlap)
    assert plan_tiles(*lr.shape[-2:], tile, overlap, multiple=m).num_tiles >= 4
    assert float((tiled - whole).abs().max()) <= 1e-5


# --------------------------------------------------------------------------- global models
def _test_image(h: int, w: int, seed: int = 0) -> Tensor:
    """A smooth image with edges (sinusoids + a few rectangles), (1, 3, h, w) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = torch.zeros(3, h, w)
    for c in range(3):
        for _ in range(4):
            fy, fx, ph = torch.rand(3, generator=g) * torch.tensor([0.3, 0.3, 6.28])
            img[c] += torch.sin(fy * yy + fx * xx + ph)
    img = (img - img.min()) / (img.max() - img.min())
    for _ in range(5):
        y0, x0 = (torch.rand(2, generator=g) * torch.tensor([h - 8, w - 8])).long()
        img[:, y0 : y0 + 8, x0 : x0 + 12] = torch.rand(3, 1, 1, generator=g)
    return img[None]


def _psnr(a: Tensor, b: Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def test_global_model_tiled_psnr_within_001_db() -> None:
    """Channel attention pools over the tile, not the image: the tiled output differs a
    little, but its PSNR against the ground truth moves by at most 0.01 dB."""
    d = tiny(global_pool=True, n_convs=4, scale=2)
    for seed in range(3):
        hr = _test_image(192, 160, seed)
        lr = F.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True).clamp(0, 1)
        whole, tiled = d(lr), tiled_forward(d, lr, 2, 48, default_overlap(d, 48))
        assert float((tiled - whole).abs().max()) > 0  # tiling is approximate here
        assert abs(_psnr(tiled, hr) - _psnr(whole, hr)) <= 0.01


def test_blended_tiles_leave_no_seams() -> None:
    """Gradient across tile borders is no larger than elsewhere (as in the whole-image
    output), while naive abutting tiles (no overlap) do show seams."""
    d = tiny(global_pool=True, n_convs=4, scale=2)
    lr = _test_image(96, 96, 1)
    plan = plan_tiles(96, 96, 32, 16)
    rows, cols = seam_positions(plan, 2)
    whole = d(lr)[0]
    tiled = tiled_forward(d, lr, 2, 32, 16)[0]
    naive = tiled_forward(d, lr, 2, 32, 0)[0]
    naive_plan = plan_tiles(96, 96, 32, 0)
    n_rows, n_cols = seam_positions(naive_plan, 2)
    assert seam_ratio(tiled, rows, cols) <= max(1.0, seam_ratio(whole, rows, cols) + 0.01)
    assert seam_ratio(naive, n_rows, n_cols) > seam_ratio(whole, n_rows, n_cols) + 0.05


def test_seam_positions_are_interior_edges() -> None:
    plan = plan_tiles(40, 40, 24, 16)  # xs = ys = (0, 8, 16)
    rows, cols = seam_positions(plan, 2)
    assert rows == cols
    assert all(0 < r < 80 for r in rows) and 16 in rows  # tile 1 starts at LR 8


# --------------------------------------------------------------------------- outputs, memory
def test_integer_array_output_matches_rounded_float() -> None:
    d = tiny(n_convs=3)
    lr = torch.rand(1, 3, 30, 34)
    ref = tiled_forward(d, lr, 2, 16, 12)[0].permute(1, 2, 0).numpy()
    out8 = tiled_forward(d, lr, 2, 16, 12, out=np.zeros((60, 68, 3), np.uint8))
    out16 = tiled_forward(d, lr, 2, 16, 12, out=np.zeros((60, 68, 3), np.uint16))
    assert np.array_equal(out8, np.round(ref * 255).astype(np.uint8))
    assert np.abs(out16.astype(np.int64) - np.round(ref * 65535)).max() <= 1


def test_progress_callback_counts_tiles() -> None:
    d = tiny()
    calls: list[tuple[int, int]] = []
    tiled_forward(d, torch.rand(1, 3, 40, 40), 2, 16, 8, lambda i, n: calls.append((i, n)))
    n = plan_tiles(40, 40, 16, 8).num_tiles
    assert calls == [(i + 1, n) for i in range(n)]


def test_strip_output_needs_no_full_size_float_buffer() -> None:
    """Writing into a uint8 array, the live tensors stay far below one float copy of the
    output (they span one tile strip)."""
    d = tiny(n_convs=3, feats=4, scale=4)
    lr = torch.rand(1, 3, 512, 24)
    out = np.zeros((2048, 96, 3), np.uint8)
    probe = TensorMemoryProbe()
    with probe:
        tiled_forward(d, lr, 4, 24, 4, out=out)
    full_float = out.size * 4
    assert probe.peak < full_float / 3
    assert out.any()


def test_activation_bytes_per_pixel_of_a_conv_stack() -> None:
    """Two live 8-channel float maps per LR pixel at the widest point, times the safety
    factor 2: 128 bytes; the probe must land near that."""
    d = tiny(n_convs=3, feats=8, scale=2)
    bpp = activation_bytes_per_pixel(d)
    assert 64 <= bpp <= 400


def test_auto_tile_size_fits_budget() -> None:
    bpp, width, scale, budget = 3000.0, 4000, 4, 2 * 1024**3
    t = auto_tile_size(bpp, width=width, scale=scale, out_channels=3, budget=budget, multiple=8)
    used = t * t * bpp + t * scale * scale * width * 3 * 4
    assert t % 8 == 0 and used <= budget
    t2 = t + 8
    assert t2 * t2 * bpp + t2 * scale * scale * width * 12 > budget * 0.9
    assert auto_tile_size(1e9, width=10, scale=2, out_channels=3, budget=1) == 64


def test_default_overlap_covers_receptive_field() -> None:
    """A local model: overlap 2r, margin r (a hard cut); a global one: 4r, a quarter."""
    d = tiny(n_convs=4)
    rf = d.traits.receptive_field
    assert default_overlap(d) == 2 * rf and blend_margin(d, 2 * rf) == rf
    assert default_overlap(d, 40) <= 10
    assert blend_margin(d, 2 * rf - 1) is None  # too narrow to be exact: cross-faded
    assert blend_margin(d, 8 * rf) == 2 * rf  # wider than needed: a quarter, faded between
    glob = tiny(n_convs=4)
    glob.traits = replace(d.traits, has_global_ops=True)
    assert default_overlap(glob) == 4 * rf and blend_margin(glob, 4 * rf) is None


def test_hard_cut_weights_are_one_tile_per_pixel() -> None:
    """Margins meeting in the middle of the overlap: every HR pixel has weight 1 in
    exactly one tile (computed once), and never within the margin of a shared edge."""
    positions, tile, s, margin = [0, 20, 40], 28, 2, 4  # overlaps of 2 * margin
    ws = blend_weights(positions, tile, s, margin)
    cover = torch.zeros(68 * s, dtype=torch.float64)
    for p, w in zip(positions, ws, strict=True):
        assert set(w.unique().tolist()) <= {0.0, 1.0}
        cover[p * s : (p + tile) * s] += w
    assert torch.equal(cover, torch.ones_like(cover))
    assert torch.all(ws[0][(tile - margin) * s :] == 0) and torch.all(ws[1][: margin * s] == 0)


@pytest.mark.parametrize(("h", "w", "scale", "tile"), [(67, 93, 2, 56), (75, 131, 3, 60)])
def test_tiled_equals_whole_at_the_default_overlap(h: int, w: int, scale: int, tile: int
                                                    ) -> None:
    """The hard cut at ``2 r`` is exact for a local model (same values as the whole)."""
    d = tiny(scale=scale, n_convs=4)
    lr = torch.rand(1, 3, h, w)
    ov = default_overlap(d, tile)
    assert blend_margin(d, ov) is not None
    tiled = tiled_forward(d, lr, scale, tile, ov)
    assert float((tiled - d(lr)).abs().max()) <= 1e-5


@pytest.mark.parametrize(("h", "w", "y", "x", "th", "tw"),
                         [(13, 13, 8, 8, 8, 8), (20, 17, 8, 8, 16, 16), (5, 30, 0, 16, 8, 16)])
def test_extract_pads_like_the_whole_image(h: int, w: int, y: int, x: int, th: int, tw: int
                                           ) -> None:
    """A tile reaching past the border equals the same window of the whole image padded
    as a whole-image forward pads it (reflect; replicate when the image is too small)."""
    from attnsr.inference.tiling import _extract

    lr = torch.rand(1, 3, h, w)
    ph, pw = max(y + th - h, 0), max(x + tw - w, 0)
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    full = F.pad(lr, (0, pw, 0, ph), mode=mode)
    assert torch.equal(_extract(lr, y, x, th, tw), full[..., y : y + th, x : x + tw])
