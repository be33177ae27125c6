"""Tiled inference: run a model tile by tile, blend the tiles, and write the result
into a preallocated output one finished row strip at a time.

Layout (all sizes in LR pixels unless said otherwise):

- The image is first padded at the bottom/right to the model's size multiple exactly
  as :class:`~attnsr.runner.Runner` does for a whole-image forward (reflect),
  so tile positions are multiples of the window size and window partitions line up
  with the whole-image ones.
- Tiles are ``tile`` square (clipped to the image), placed every ``tile - overlap``
  with the last tile flush with the border (SwinIR's
  ``list(range(0, h - tile, stride)) + [h - tile]``).
- Where two neighbouring tiles share ``o`` pixels, a margin ``m`` next to each tile's
  edge gets weight 0 -- that is where a tile's own zero-padding disturbs its output --
  and the rest of the overlap, ``o - 2 m``, is cross-faded with a raised cosine
  (``sin^2`` / ``cos^2``, so the two weights sum to 1). Edges that are the image
  border keep weight 1: there the tile sees exactly what a whole-image forward sees.
  A local model (no global ops) whose receptive field ``r`` fits the margin gives
  *exactly* the whole-image output, so for it :func:`default_overlap` picks ``2 r``
  and the margin is ``r``: the cross-fade has length 0, a hard cut in the middle of
  the overlap, every output pixel computed once by the tile that sees all it
  depends on (half the overlap of a cross-fade, so 1.31x instead of 1.78x the
  whole-image work at 688 px tiles of a 43 px field). Models with global ops (whose
  tiles can only approximate the whole image) get ``4 r``, margin ``o // 4`` and a
  cross-fade over the middle half that hides the seams; a wider overlap than
  the default keeps margin ``max(o // 4, r)`` and cross-fades the rest.
- Because the tiles form a grid and each weight is separable (``wy(y) * wx(x)``), the
  accumulated weight is separable too: each tile's 1-D weights are divided by their
  axis totals up front, so the accumulator holds final values.
- Row strips are processed top to bottom; the float accumulator only spans one strip
  (``tile * scale`` output rows by the full output width). Rows above the next strip
  are final: they are normalised and handed to the output (a float tensor, a
  ``uint8``/``uint16``/float numpy array, or any callable), so a 16000x12000 result
  never needs a full-size float buffer. :func:`tiled_rows` yields the finished rows
  instead, for a consumer that streams them to an encoder (no full-size output at all).
  The strip buffer is allocated once per image; rows carried to the next strip are
  moved up in place.
- :func:`tiled_rows_quantized` (the streaming path) goes further: a column range is
  final as soon as the next tile to its right is added, so it is quantised into the
  output-dtype strip at once; float memory is the current tile's columns plus the rows
  shared with the next strip (``overlap * scale`` rows across the width) instead of
  ``tile * scale`` float rows. Same sums in the same order, so the same values.

The automatic tile size (how much memory a tile needs) is in
:mod:`attnsr.inference.memory`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnsr.models.base import ModelTraits
from attnsr.runner import Runner

log = logging.getLogger(__name__)

TileFn = Callable[[Tensor], Tensor]
RowSink = Callable[[int, Tensor], None]
Output = Union[Tensor, np.ndarray, RowSink, None]
ProgressCb = Callable[[int, int], None]


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True, kw_only=True)
class TilePlan:
    """Where the tiles go. ``padded`` is the (H, W) after multiple-padding; ``ys``/``xs``
    are tile origins (multiples of the model's size multiple); tiles are
    ``tile_h x tile_w``."""

    height: int
    width: int
    padded: tuple[int, int]
    tile_h: int
    tile_w: int
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def num_tiles(self) -> int:
        return len(self.ys) * len(self.xs)


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def axis_positions(n: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis of length ``n``; the last tile ends flush at ``n``."""
    if tile >= n:
        return [0]
    return list(range(0, n - tile, stride)) + [n - tile]


def plan_tiles(
    height: int, width: int, tile: int, overlap: int, *, multiple: int = 1, min_size: int = 1
) -> TilePlan:
    """Tile layout for an ``height x width`` LR image. ``tile <= 0`` means one tile.

    ``tile`` is rounded down and ``overlap`` up to ``multiple``; the overlap is capped
    so that the stride stays at least one multiple.
    """
    m = max(1, multiple)
    ph = max(round_up(height, m), round_up(min_size, m))
    pw = max(round_up(width, m), round_up(min_size, m))
    if tile <= 0:
        tile = max(ph, pw)
    tile = max(tile // m * m, m, round_up(min_size, m))
    tile_h, tile_w = min(tile, ph), min(tile, pw)
    overlap = min(round_up(max(overlap, 0), m), tile - m)
    stride = tile - overlap
    return TilePlan(
        height=height, width=width, padded=(ph, pw), tile_h=tile_h, tile_w=tile_w,
        overlap=overlap, ys=tuple(axis_positions(ph, tile_h, stride)),
        xs=tuple(axis_positions(pw, tile_w, stride)),
    )


def _ramp(length: int) -> Tensor:
    """Raised-cosine ramp rising from ~0 to ~1 over ``length`` samples (float64)."""
    t = (torch.arange(length, dtype=torch.float64) + 0.5) / max(length, 1)
    return torch.sin(0.5 * math.pi * t) ** 2


def blend_weights(
    positions: Sequence[int], tile: int, scale: int, margin: int | None = None
) -> list[Tensor]:
    """1-D blend weights (length ``tile * scale``, HR pixels, float64) of each tile on an
    axis: 0 over ``margin`` LR pixels next to each shared edge (default: a quarter of
    the overlap; at most half of it), a raised-cosine cross-fade over the rest of the
    overlap (none when the margins meet: a hard cut), 1 elsewhere and at the image
    border."""
    out = []

    def dropped(o: int) -> int:
        return o // 4 if margin is None else min(margin * scale, o // 2)

    for i, p in enumerate(positions):
        w = torch.ones(tile * scale, dtype=torch.float64)
        if i > 0:  # shared with the previous tile: fade in
            o = (positions[i - 1] + tile - p) * scale
            m = dropped(o)
            w[:m] = 0.0
            w[m : o - m] = _ramp(o - 2 * m)
        if i + 1 < len(positions):  # shared with the next tile: fade out
            o = (p + tile - positions[i + 1]) * scale
            m = dropped(o)
            w[tile * scale - m :] = 0.0
            w[tile * scale - o + m : tile * scale - m] *= _ramp(o - 2 * m).flip(0)
        out.append(w)
    return out


def _normalised_weights(positions: Sequence[int], tile: int, n: int, s: int,
                        margin: int | None = None) -> list[Tensor]:
    """:func:`blend_weights` divided by their sum over the padded HR axis (length
    ``n * s``), as float32: the weights of all tiles covering a pixel then sum to 1.
    (The grid makes the 2-D weight sum separable: ``sum_i wy_i * sum_j wx_j``.)"""
    weights = blend_weights(positions, tile, s, margin)
    total = torch.zeros(n * s, dtype=torch.float64)
    for p, w in zip(positions, weights, strict=True):
        total[p * s : p * s + w.numel()] += w
    return [(w / total[p * s : p * s + w.numel()]).float()
            for p, w in zip(positions, weights, strict=True)]


def _plan_weights(model: Runner | TileFn, plan: TilePlan, s: int
                  ) -> tuple[list[Tensor], list[Tensor]]:
    """The normalised row and column weights of ``plan``'s tiles for ``model``."""
    margin = blend_margin(model, plan.overlap)
    return (_normalised_weights(plan.ys, plan.tile_h, plan.padded[0], s, margin),
            _normalised_weights(plan.xs, plan.tile_w, plan.padded[1], s, margin))


# --------------------------------------------------------------------------- running
def _extract(lr: Tensor, y: int, x: int, th: int, tw: int) -> Tensor:
    """Tile ``(1, C, th, tw)`` at (y, x); parts past the bottom/right border are padded as
    :meth:`Runner.run` pads a whole image (reflect, replicate if too small)."""
    h, w = lr.shape[-2:]
    t = lr[..., y : min(y + th, h), x : min(x + tw, w)]
    ph, pw = th - t.shape[-2], tw - t.shape[-1]
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        if mode == "reflect" and (ph >= t.shape[-2] or pw >= t.shape[-1]):
            # the reflection reaches beyond this tile: pad the image region instead
            region = lr[..., max(0, y - th) :, max(0, x - tw) :]
            full = F.pad(region.float(), (0, pw, 0, ph), mode=mode)
            oy, ox = y - max(0, y - th), x - max(0, x - tw)
            return full[..., oy : oy + th, ox : ox + tw].contiguous()
        t = F.pad(t.float(), (0, pw, 0, ph), mode=mode)
    return t.contiguous()


def _as_sink(out: Output, channels: int, hr: tuple[int, int]) -> tuple[RowSink, Any]:
    """A row sink for ``out`` and what :func:`tiled_forward` returns."""
    if out is None:
        out = torch.empty(1, channels, *hr)
    if isinstance(out, Tensor):
        target = out

        def write_tensor(r0: int, rows: Tensor) -> None:
            target[0, :, r0 : r0 + rows.shape[1]] = rows.to(target.dtype)

        return write_tensor, out
    if isinstance(out, np.ndarray):
        return array_sink(out), out
    return out, None


def array_sink(
    out: np.ndarray, channels: slice | None = None, *, to_gray: bool = False
) -> RowSink:
    """Sink writing finished rows ``(C, n, W)`` in [0, 1] into ``out`` ``(H, W[, C])``.

    Integer arrays get ``round(x * max)``; ``channels`` selects the target channels of
    an (H, W, C) array; ``to_gray`` averages the rows' channels into one plane (a gray
    image or alpha plane that was run through an RGB model).
    """
    scale = float(np.iinfo(out.dtype).max) if out.dtype.kind in "ui" else 1.0

    def write(r0: int, rows: Tensor) -> None:
        if to_gray:
            rows = rows.mean(0, keepdim=True)
        vals = rows.clamp_(0.0, 1.0)  # rows belong to the sink: in place
        if scale != 1.0:
            vals = vals.mul_(scale).round_()
        arr = vals.permute(1, 2, 0).numpy()  # assignment casts (values are integral)
        r1 = r0 + arr.shape[0]
        if out.ndim == 2:
            out[r0:r1] = arr[..., 0]
        else:
            out[r0:r1, :, channels if channels is not None else slice(None)] = arr

    return write


class _StripAccumulator:
    """Float accumulator spanning one row strip (allocated once per image).

    Tiles arrive with normalised weights (the accumulated weight is 1 everywhere), so
    finished rows are final as they are: :meth:`finished` shows them, :meth:`advance`
    then moves the strip down."""

    def __init__(self, channels: int, rows: int, width: int, crop: tuple[int, int]) -> None:
        self.acc = torch.zeros(channels, rows, width)
        self.top = 0  # output row of acc[:, 0]
        self.crop = crop

    def add(self, y0: int, x0: int, tile: Tensor, wy: Tensor, wx: Tensor) -> None:
        """Add ``tile`` (C, th, tw) times ``wy[:, None] * wx`` at output (y0, x0); the
        tile is scaled in place."""
        r = y0 - self.top
        tile.mul_(wy[:, None]).mul_(wx)
        self.acc[:, r : r + tile.shape[1], x0 : x0 + tile.shape[2]].add_(tile)

    def finished(self, until: int) -> Tensor | None:
        """Rows ``[top, until)`` cropped to the image ``(C, n, W)`` (a view), or None."""
        stop = min(until, self.crop[0])
        if stop <= self.top:
            return None
        return self.acc[:, : stop - self.top, : self.crop[1]]

    def advance(self, until: int) -> None:
        """Drop rows ``[top, until)``: shift the rest up, zero the freed rows."""
        n = until - self.top
        if n <= 0:
            return
        keep = max(self.acc.shape[1] - n, 0)
        # move the carried rows up in blocks of ``n`` rows (a block's source and target
        # never overlap): no temporary, one strip buffer serves the whole image
        for r in range(0, keep, n):
            m = min(n, keep - r)
            self.acc[:, r : r + m].copy_(self.acc[:, n + r : n + r + m])
        self.acc[:, keep:].zero_()
        self.top = until


def _traits(model: Runner | TileFn) -> ModelTraits | None:
    """The model's traits: a descriptor's, or any callable's ``traits`` attribute."""
    traits = getattr(model, "traits", None)
    return traits if isinstance(traits, ModelTraits) else None


def size_requirements(model: Runner | TileFn) -> tuple[int, int]:
    """(size multiple, minimum size) the model needs."""
    traits = _traits(model)
    return (traits.multiple_of, traits.min_size) if traits is not None else (1, 1)


def _plan_for(model: Runner | TileFn, lr: Tensor, tile: int, overlap: int) -> TilePlan:
    """The tile plan of ``lr`` ``(1, C, H, W)`` for ``model``'s size requirements."""
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"tiled_forward expects (1, C, H, W), got {tuple(lr.shape)}")
    multiple, min_size = size_requirements(model)
    return plan_tiles(lr.shape[-2], lr.shape[-1], tile, overlap, multiple=multiple,
                      min_size=min_size)


def _report(progress_cb: ProgressCb | None, done: int, total: int) -> None:
    if progress_cb is not None:
        progress_cb(done, total)


def tiled_rows(
    model: Runner | TileFn,
    lr: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    progress_cb: ProgressCb | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Upscale ``lr`` ``(1, C, H, W)`` in [0, 1] tile by tile, yielding the finished output
    rows top to bottom as ``(first_row, rows)``: ``rows`` is float32 ``(C', n, sW)``, a
    view of the strip buffer (an inference tensor: modify it under
    ``torch.inference_mode()``) that must be used before the next block is asked for.
    The blocks cover rows ``0 .. sH`` once, in order (what a streaming encoder needs).
    Arguments as :func:`tiled_forward`."""
    plan = _plan_for(model, lr, tile, overlap)
    h, w = lr.shape[-2:]
    s = scale
    wys, wxs = _plan_weights(model, plan, s)
    acc: _StripAccumulator | None = None
    done = 0
    for y, wy in zip(plan.ys, wys, strict=True):
        for x, wx in zip(plan.xs, wxs, strict=True):
            sr = _run_tile(model, _extract(lr, y, x, plan.tile_h, plan.tile_w))
            if plan.num_tiles == 1:  # nothing to blend
                _report(progress_cb, 1, 1)
                yield 0, sr[:, : h * s, : w * s]
                return
            if acc is None:  # the output channels are known after the first tile
                acc = _StripAccumulator(sr.shape[0], plan.tile_h * s, plan.padded[1] * s,
                                        (h * s, w * s))
            rows = acc.finished(y * s)  # rows above this strip are final
            if rows is not None:
                yield acc.top, rows
            with torch.inference_mode():  # tile outputs are inference tensors
                acc.advance(y * s)
                acc.add(y * s, x * s, sr, wy, wx)
            done += 1
            _report(progress_cb, done, plan.num_tiles)
    assert acc is not None
    rows = acc.finished(plan.padded[0] * s)
    if rows is not None:
        yield acc.top, rows


Quantizer = Callable[[Tensor, np.ndarray], None]


def tiled_rows_quantized(
    model: Runner | TileFn,
    lr: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    quantize: Quantizer,
    buffer: Callable[[int, int], np.ndarray],
    progress_cb: ProgressCb | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`tiled_rows` with the finished pixels quantised as soon as they are final,
    so the full-width float strip is never held: yields ``(first_row, block)`` with
    ``block`` a ``(n, sW, k)`` array from ``buffer(rows, width)`` (reused; use it before
    the next one), filled column range by column range by ``quantize(values (C', n, w),
    target (n, w, k))``.

    Float memory: the current tile's columns (one tile output) and the rows shared with
    the next strip across the width (``overlap * scale`` rows), instead of
    ``tile * scale`` float rows. The sums are formed in the same order as in
    :func:`tiled_rows` (carried rows, then this strip's tiles left to right), so the
    values are identical."""
    plan = _plan_for(model, lr, tile, overlap)
    h, w = lr.shape[-2:]
    s = scale
    th, tw = plan.tile_h * s, plan.tile_w * s
    wys, wxs = _plan_weights(model, plan, s)
    out_h, out_w = h * s, w * s
    carry: Tensor | None = None  # rows [y s, y s + carry rows) from the strips above
    win: Tensor | None = None  # float columns [x s, x s + tw) of the current tile
    bands: list[Tensor] = []  # two carry buffers: one read, one written per strip
    done = 0
    for i, (y, wy) in enumerate(zip(plan.ys, wys, strict=True)):
        y0 = y * s
        y_next = plan.ys[i + 1] * s if i + 1 < len(plan.ys) else y0 + th  # band start
        final = min(y_next, out_h) - y0  # rows of this strip final after it (cropped)
        band = y0 + th - y_next  # rows carried to the next strip
        block = buffer(max(final, 0), out_w)
        new_carry: Tensor | None = None
        prev_x = -1
        for j, (x, wx) in enumerate(zip(plan.xs, wxs, strict=True)):
            x0 = x * s
            sr = _run_tile(model, _extract(lr, y, x, plan.tile_h, plan.tile_w))
            with torch.inference_mode():
                if win is None:  # one window and two carry buffers serve the whole image
                    win = torch.empty(sr.shape[0], th, tw)
                    steps = [b - a for a, b in zip(plan.ys[:-1], plan.ys[1:], strict=True)]
                    rows_max = th - min(steps, default=plan.tile_h) * s
                    bands = [torch.empty(sr.shape[0], max(rows_max, 0), plan.padded[1] * s)
                             for _ in range(2 if len(plan.ys) > 1 else 0)]
                if prev_x < 0:  # the strip's first tile: an empty window
                    win.zero_()
                    seen = 0  # columns of the window holding values already
                else:  # move the still-pending columns to the left edge, in blocks of
                    shift = x0 - prev_x  # ``shift`` columns (source and target apart)
                    seen = max(tw - shift, 0)
                    for c in range(0, seen, shift):
                        n = min(shift, seen - c)
                        win[:, :, c : c + n].copy_(win[:, :, shift + c : shift + c + n])
                    win[:, :, seen:].zero_()
                if new_carry is None and band > 0:
                    new_carry = bands[i % 2][:, :band]
                if carry is not None:  # columns entering the window start from the carry
                    k = carry.shape[1]
                    win[:, :k, seen:].copy_(carry[:, :, x0 + seen : x0 + tw])
                sr.mul_(wy[:, None]).mul_(wx)
                win.add_(sr)
                # columns final in this strip: up to the next tile's start (or the end)
                c1 = plan.xs[j + 1] * s - x0 if j + 1 < len(plan.xs) else tw
                lo, hi = x0, min(x0 + c1, out_w)
                if final > 0 and hi > lo:
                    quantize(win[:, :final, : hi - lo], block[:, lo:hi])
                if new_carry is not None:
                    new_carry[:, :, x0 : x0 + c1] = win[:, th - band :, :c1]
            del sr  # not alive during the next tile's forward
            prev_x = x0
            done += 1
            _report(progress_cb, done, plan.num_tiles)
        carry = new_carry
        if final > 0:
            yield y0, block


@torch.inference_mode()
def _run_tile(model: Runner | TileFn, tile: Tensor) -> Tensor:
    """``model`` on one tile: float32 ``(C', th s, tw s)`` on the CPU (an inference
    tensor: modify it under ``torch.inference_mode()``)."""
    return model(tile)[0].detach().to("cpu", torch.float32)


def tiled_forward(
    model: Runner | TileFn,
    lr: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    progress_cb: ProgressCb | None = None,
    *,
    out: Output = None,
) -> Any:
    """Upscale ``lr`` ``(1, C, H, W)`` in [0, 1] tile by tile.

    ``model`` is any ``(1, C, h, w) -> (1, C', s h, s w)`` callable; if it has
    ``traits`` (a descriptor does) its size multiple and minimum size are honoured.
    ``tile <= 0`` runs one tile.
    ``out``: None (a new float tensor ``(1, C', sH, sW)`` is returned), a tensor of that
    shape, a numpy array ``(sH, sW[, C'])`` (integer arrays get rounded values), or a
    row sink ``f(first_row, rows (C', n, sW))`` (which may modify ``rows``).
    ``progress_cb(done, total)`` is called after each tile. Returns ``out`` (None for a sink).
    """
    h, w = lr.shape[-2:]
    sink: RowSink | None = None
    result: Any = None
    for r0, rows in tiled_rows(model, lr, scale, tile, overlap, progress_cb):
        if sink is None:  # the output channels are known with the first rows
            sink, result = _as_sink(out, rows.shape[0], (h * scale, w * scale))
        with torch.inference_mode():
            sink(r0, rows)
    return result


def _is_local(model: Runner | TileFn) -> bool:
    """Whether ``model`` declares a finite receptive field and no global ops."""
    traits = _traits(model)
    return traits is not None and not traits.has_global_ops


def blend_margin(model: Runner | TileFn, overlap: int) -> int | None:
    """LR pixels dropped next to each shared tile edge (:func:`blend_weights`): for a
    local model whose receptive field ``r`` fits twice in ``overlap``,
    ``max(overlap // 4, r)`` (its tiles are then exact); else None (a quarter of the
    overlap, the middle half cross-faded to hide what cannot be exact)."""
    traits = _traits(model)
    if traits is None or not _is_local(model) or overlap < 2 * traits.receptive_field:
        return None
    return max(overlap // 4, traits.receptive_field)


def default_overlap(model: Runner | TileFn, tile: int = 0) -> int:
    """Overlap of neighbouring tiles: for a local model 2x the receptive field (each
    tile drops the field next to the shared edge, a hard cut: exact), for a model with
    global ops 4x (the dropped quarter covers the field, the middle half is
    cross-faded); at most a quarter of ``tile`` (> 0) so deep models do not multiply
    the work; rounded to the size multiple."""
    multiple, _ = size_requirements(model)
    traits = _traits(model)
    rf = traits.receptive_field if traits is not None else 8
    overlap = round_up((2 if _is_local(model) else 4) * rf, multiple)
    if tile > 0:
        overlap = min(overlap, max(tile // 4 // multiple * multiple, multiple))
    return overlap
