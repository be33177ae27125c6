"""Where tile seams would show, and how visible they are: a measure of tiled inference.

Used by ``benchmarks/tiling_quality.py`` and by ``tests/test_tiling.py`` (pytest puts
``benchmarks/`` on ``sys.path``: ``pythonpath`` in ``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnsr.inference.tiling import TilePlan


def seam_positions(plan: TilePlan, scale: int) -> tuple[list[int], list[int]]:
    """HR rows and columns where a tile edge or a blend-zone edge lies inside the image
    (the places a seam would show)."""

    def axis(pos: Sequence[int], tile: int, n: int) -> list[int]:
        edges: set[int] = set()
        for i in range(1, len(pos)):
            o = pos[i - 1] + tile - pos[i]
            for e in (pos[i], pos[i] + o // 4, pos[i] + o - o // 4, pos[i - 1] + tile):
                if 0 < e < n:
                    edges.add(e * scale)
        return sorted(edges)

    return axis(plan.ys, plan.tile_h, plan.height), axis(plan.xs, plan.tile_w, plan.width)


def seam_ratio(img: Tensor, rows: Sequence[int], cols: Sequence[int]) -> float:
    """Mean absolute gradient across the given rows/columns divided by the mean absolute
    gradient elsewhere. ``img`` is ``(C, H, W)``; a gradient "across row r" is
    ``img[r] - img[r - 1]``. About 1 for a seamless image, > 1 with visible seams."""
    dy = (img[:, 1:] - img[:, :-1]).abs().mean(dim=(0, 2))  # dy[r-1] = across row r
    dx = (img[:, :, 1:] - img[:, :, :-1]).abs().mean(dim=(0, 1))
    ry = torch.zeros_like(dy, dtype=torch.bool)
    rx = torch.zeros_like(dx, dtype=torch.bool)
    ry[[r - 1 for r in rows]] = True
    rx[[c - 1 for c in cols]] = True
    at = torch.cat([dy[ry], dx[rx]])
    away = torch.cat([dy[~ry], dx[~rx]])
    return float(at.mean() / away.mean())
