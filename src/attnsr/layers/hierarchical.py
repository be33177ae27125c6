"""Spatial-channel correlation in hierarchical windows (HiT-SR, Zhang et al., ECCV 2024).

HiT-SR replaces window self-attention by *spatial-channel correlation* (SCC), linear in
the window size, so that the blocks of one group can use windows that grow from
``base / 2`` to ``8 * base`` pixels (the "hierarchical windows"). For a window of
``L = ws * ws`` tokens, a dual feature extraction (:class:`DFE`) gives ``q`` and ``v``
(``C / 2`` channels each, split into ``heads`` heads), then

- **spatial self-correlation**: ``v`` is pooled by a learned linear map from each
  ``(ws/b) x (ws/b)`` cell to one token (``b = min(ws, base)``, so ``b^2`` key cells),
  and ``x_s = (q v_cells^T / d + B) v_cells`` with ``d`` the head dim (a division, not
  a square root) and ``B`` a relative position bias from a small MLP
  (:class:`DynamicPosBias`) averaged over each cell; no softmax;
- **channel self-correlation**: one head over all ``C / 2`` channels,
  ``x_c = ((q^T v) / L) v^T``;

and ``proj(concat(x_s, x_c))``. Windows are anchored at the top-left corner; a map that
is not a window multiple is extended at the bottom/right by *periodic reflection*
(:func:`reflect_index`), which equals the official double ``F.pad(mode='reflect')``
wherever that one runs and is defined for any size (and traces to ONNX at dynamic
sizes: the padding is an index gather computed from symbolic shapes).

Parameter names follow ``XiangZ-0/HiT-SR`` (``qv``, ``proj``, ``spatial_linear``,
``pos``), so official state dicts load without renaming.

Explainability: :meth:`SpatialChannelCorrelation.query_map` gives the magnitude of one
query pixel's spatial correlation over its window, as a distribution on the map
(:mod:`attnsr.explain.capture` records it as a ``"query"`` map).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.window import window_partition, window_reverse


def reflect_index(n: Tensor, length: Tensor) -> Tensor:
    """Source indices ``(length,)`` extending an axis of ``n`` samples by periodic
    reflection without repeating the edge: ``0, 1, .., n-1, n-2, .., 0, 1, ..``.

    ``n``, ``length``: 0-dim int64 tensors (symbolic when traced). For ``pad < n`` this is
    ``F.pad(mode='reflect')``; for larger pads it is reflect-padding repeated, as
    HiT-SR's ``check_image_size`` does; ``n == 1`` repeats the only sample.
    """
    period = torch.clamp(2 * n - 2, min=1)
    i = torch.arange(length, device=n.device) % period
    return torch.where(i < n, i, period - i)


def pad_to_window(x: Tensor, ws: int) -> Tensor:
    """``x`` ``(B, H, W, C)`` -> ``(B, Hp, Wp, C)``, H and W rounded up to a multiple of
    ``ws`` by :func:`reflect_index` at the bottom/right (a no-op copy when they are)."""
    hw = torch._shape_as_tensor(x)[1:3]  # symbolic under tracing
    padded = hw + (-hw) % ws
    x = x.index_select(1, reflect_index(hw[0], padded[0]))
    return x.index_select(2, reflect_index(hw[1], padded[1]))


class DFE(nn.Module):
    """Dual feature extraction: ``conv_path(x) * linear(x)`` on a map.

    ``conv`` is 1x1 (C -> C/5), LeakyReLU(0.2), 3x3, LeakyReLU(0.2), 1x1 (-> out);
    ``linear`` a 1x1 conv (C -> out). ``(B, C, H, W) -> (B, out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels // 5
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        self.linear = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * self.linear(x)


class DynamicPosBias(nn.Module):
    """Relative position bias from an MLP over offsets (CrossFormer's DPB, non-residual):
    ``(n, 2)`` offsets ``(dy, dx)`` -> ``(n, heads)``. Hidden width ``dim // 4``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        p = dim // 4
        self.pos_proj = nn.Linear(2, p)
        self.pos1 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, p))
        self.pos2 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, p))
        self.pos3 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True),
                                  nn.Linear(p, num_heads))

    def forward(self, offsets: Tensor) -> Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


@lru_cache(maxsize=32)
@torch.inference_mode(False)
def _cell_bias_index(ws: int, base: int) -> Tensor:
    """``(ws*ws, base*base)`` flat indices into the cell-averaged bias table
    ``(2ws - c) x (2ws - c)`` (``c = ws // base``, the table box-averaged over ``c x c``):
    entry ``[q, k]`` picks the mean bias of query pixel ``q`` over the pixels of key cell
    ``k``. Cached (CPU); do not modify."""
    c = ws // base
    ar = torch.arange(ws)
    cells = torch.arange(base) * c
    # row offset (qy - cell_top) + ws - 1, minus c - 1 for the box-average alignment
    dy = ar[:, None] - cells[None, :] + ws - c  # ws, base
    side = 2 * ws - c
    idx = dy[:, None, :, None] * side + dy[None, :, None, :]  # qy, qx, ky, kx
    return idx.reshape(ws * ws, base * base)


class SpatialChannelCorrelation(nn.Module):
    """SCC on a map ``(B, H, W, C)`` -> ``(B, H, W, C)`` in windows of ``window_size``.

    Args:
        dim: C (even, a multiple of ``2 * num_heads``).
        base_window: the base window of the hierarchy; key cells are
            ``ws / min(ws, base)`` pixels on a side.
        window_size: ws (a multiple of ``base_window`` when larger).
        num_heads: heads of the spatial correlation.
    """

    def __init__(self, dim: int, *, base_window: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        if dim % (2 * num_heads):
            raise ValueError(f"dim {dim} is not a multiple of 2 * num_heads ({num_heads})")
        self.base = min(window_size, base_window)
        if window_size % self.base:
            raise ValueError(f"window {window_size} is not a multiple of base {base_window}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.head_dim = dim // (2 * num_heads)
        self.qv = DFE(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.cell = window_size // self.base
        self.spatial_linear = nn.Linear(self.cell * self.cell, 1)
        self.pos = DynamicPosBias(dim // 4, num_heads)

    def position_bias(self) -> Tensor:
        """``(heads, ws*ws, base*base)``: the MLP bias of every (query pixel, key pixel)
        offset, averaged over the pixels of each key cell."""
        ws, c = self.window_size, self.cell
        w = self.spatial_linear.weight
        r = torch.arange(1 - ws, ws, device=w.device, dtype=w.dtype)
        offsets = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).view(-1, 2)
        table = self.pos(offsets).view(1, 2 * ws - 1, 2 * ws - 1, -1).permute(0, 3, 1, 2)
        table = F.avg_pool2d(table, c, stride=1) if c > 1 else table  # 1, heads, 2ws-c, 2ws-c
        idx = _cell_bias_index(ws, self.base).to(w.device)
        return table.flatten(2)[0][:, idx]  # heads, ws*ws, base*base

    def _project_cells(self, v: Tensor) -> Tensor:
        """``(B, heads, ws*ws, d)`` -> ``(B, heads, base*base, d)``: each cell of
        ``c x c`` pixels pooled by ``spatial_linear``."""
        B, nh, _, d = v.shape
        b, c = self.base, self.cell
        v = v.reshape(B, nh, b, c, b, c, d).permute(0, 1, 2, 4, 6, 3, 5)  # B,nh,b,b,d,c,c
        return self.spatial_linear(v.reshape(B, nh, b * b, d, c * c)).squeeze(-1)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Windows ``(nW*B, L, C)`` -> q, v ``(nW*B, heads, L, d)``."""
        n, L, _ = x.shape
        qv = x.view(n, L, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qv[0], qv[1]

    def _features(self, x: Tensor) -> Tensor:
        """Padded map ``(B, Hp, Wp, C)`` -> DFE output ``(B, Hp, Wp, C)``."""
        return self.qv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        ws = self.window_size
        qv = self._features(pad_to_window(x, ws))  # B, Hp, Wp, C
        Hp, Wp = qv.shape[1], qv.shape[2]
        q, v = self._split(window_partition(qv, ws))  # nW*B, heads, L, d
        n, nh, L, d = q.shape
        # spatial self-correlation: queries against b*b pooled key cells
        cells = self._project_cells(v)  # n, heads, b*b, d
        corr = q @ cells.transpose(-2, -1) / self.head_dim + self.position_bias()
        xs = (corr @ cells).permute(0, 2, 1, 3).reshape(n, L, nh * d)  # n, L, C/2
        # channel self-correlation: one head over all C/2 channels
        qc = q.permute(0, 2, 1, 3).reshape(n, L, nh * d)
        vc = v.permute(0, 2, 1, 3).reshape(n, L, nh * d)
        xc = ((qc.transpose(-2, -1) @ vc) / L @ vc.transpose(-2, -1)).transpose(-2, -1)
        out = torch.cat([window_reverse(xs, ws, Hp, Wp), window_reverse(xc, ws, Hp, Wp)], -1)
        return self.proj(out[:, :H, :W])  # B, H, W, C

    @torch.no_grad()
    def query_map(self, x: Tensor, qy: int, qx: int) -> Tensor:
        """Where pixel ``(qy, qx)`` of ``x`` ``(B, H, W, C)`` gathers its spatial
        correlation from: ``(B, 1, H, W)``, summing to 1.

        The weight of a key pixel is ``|corr(query, its cell)| * |spatial_linear weight
        of its place in the cell|`` averaged over heads, normalised; pixels of the
        reflected padding are folded back onto the pixels they copy.
        """
        B, H, W, _ = x.shape
        ws, b, c = self.window_size, self.base, self.cell
        xp = pad_to_window(x, ws)
        Hp, Wp = xp.shape[1], xp.shape[2]
        y0, x0 = qy // ws * ws, qx // ws * ws
        win = self._features(xp)[:, y0 : y0 + ws, x0 : x0 + ws].reshape(B, ws * ws, -1)
        q, v = self._split(win)  # B, heads, L, d
        t = (qy - y0) * ws + (qx - x0)
        cells = self._project_cells(v)  # B, heads, b*b, d
        corr = q[:, :, t : t + 1] @ cells.transpose(-2, -1) / self.head_dim
        corr = corr.squeeze(2) + self.position_bias()[:, t]  # B, heads, b*b
        w_cell = corr.abs().mean(1).view(B, b, 1, b, 1)
        w_pix = self.spatial_linear.weight.abs().view(1, 1, c, 1, c)
        local = (w_cell * w_pix).reshape(B, ws, ws)
        full = x.new_zeros(B, Hp, Wp)
        full[:, y0 : y0 + ws, x0 : x0 + ws] = local
        sizes = torch.tensor([H, W, Hp, Wp], device=x.device)
        rows = reflect_index(sizes[0], sizes[2])
        cols = reflect_index(sizes[1], sizes[3])
        out = x.new_zeros(B, H, Wp).index_add_(1, rows, full)
        out = x.new_zeros(B, H, W).index_add_(2, cols, out)
        return (out / out.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)).unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, window_size={self.window_size}, base={self.base}, "
                f"num_heads={self.num_heads}")
