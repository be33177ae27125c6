"""Feature modulation: SAFMN's spatially-adaptive feature modulation (SAFM, Sun et al.
ICCV 2023) and the global response normalisation (GRN, ConvNeXt-V2) of its NTIRE 2023
variant.

SAFM splits the channels into ``n_levels`` groups; group ``i > 0`` is max-pooled to
``1 / 2**(i + pool_offset)`` of the size (adaptive pooling, as the official code), passed
through a 3x3 depth-wise conv and brought back with nearest upsampling; group 0 keeps the
full resolution. A 1x1 conv aggregates the groups, GELU makes the *modulation map*, and
the input is multiplied by it: ``x * gelu(aggr(cat(levels)))``. The map is not bounded to
(0, 1): it scales and can flip features (a modulation, not a gate).

Adaptive max pooling over sizes that are not multiples of the factor has bins of varying
length, which neither ``F.adaptive_max_pool2d`` nor ONNX ``MaxPool`` can export at a
dynamic size. While tracing (ONNX / TorchScript export) the pooling and the nearest
upsampling therefore run as index gathers computed from the symbolic sizes
(:func:`adaptive_max_pool2d_gather`, :func:`nearest_resize_gather`); they equal the eager
operators exactly (tested at many sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of an NCHW map (SAFMN's ``channels_first`` LayerNorm):
    ``(x - mean_c) / sqrt(var_c + eps) * weight + bias``, biased variance.

    Shapes: (B, C, H, W) -> (B, C, H, W). Keys ``weight``, ``bias`` (C,).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation: ``gamma * (x * N) + beta + x`` with
    ``N = ||x||_2 over (H, W) / (mean over C of it + 1e-6)``.

    Shapes: (B, C, H, W) -> (B, C, H, W); a global operation (the L2 norms cover the whole
    map). Keys ``gamma``, ``beta`` (1, C, 1, 1), zero at init (identity).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)  # B, C, 1, 1
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


def _pool_index(n: Tensor, factor: int) -> Tensor:
    """Gather indices ``(n // factor, 2 * factor + 1)`` of adaptive pooling's bins.

    Bin ``j`` of ``out = n // factor`` covers ``[floor(j n / out), ceil((j + 1) n / out))``
    (PyTorch's rule); it is shorter than ``n / out + 2 < 2 * factor + 2``, so
    ``2 * factor + 1`` offsets clamped to the bin's last index cover it (repeats do not
    change a max). ``n``: 0-dim int64 tensor.
    """
    out = n // factor
    j = torch.arange(out)
    start = (j * n) // out
    end = ((j + 1) * n + out - 1) // out
    t = torch.arange(2 * factor + 1)
    return torch.minimum(start[:, None] + t, end[:, None] - 1)


def adaptive_max_pool2d_gather(x: Tensor, factor: int) -> Tensor:
    """``F.adaptive_max_pool2d(x, (H // factor, W // factor))`` with index gathers whose
    sizes stay symbolic when traced. (B, C, H, W) -> (B, C, H // factor, W // factor)."""
    size = torch._shape_as_tensor(x)
    b, c = x.shape[:2]
    rows = _pool_index(size[2], factor)  # h', L
    x = x.index_select(2, rows.flatten()).view(b, c, -1, rows.shape[1], x.shape[3]).amax(3)
    cols = _pool_index(size[3], factor)  # w', L
    return x.index_select(3, cols.flatten()).view(b, c, x.shape[2], -1, cols.shape[1]).amax(4)


def _nearest_index(n_in: Tensor, n_out: Tensor) -> Tensor:
    """PyTorch's nearest source indices ``min(floor(i * (in / out)), in - 1)`` with the
    scale in float32, as ATen computes it. Returns (n_out,) int64."""
    scale = n_in.to(torch.float32) / n_out.to(torch.float32)
    i = torch.arange(n_out).to(torch.float32)
    return torch.minimum(torch.floor(i * scale).to(torch.int64), n_in - 1)


def nearest_resize_gather(x: Tensor, like: Tensor) -> Tensor:
    """``F.interpolate(x, size=like.shape[-2:], mode="nearest")`` as index gathers with
    symbolic sizes. (B, C, h, w) -> (B, C, H, W)."""
    src, dst = torch._shape_as_tensor(x), torch._shape_as_tensor(like)
    x = x.index_select(2, _nearest_index(src[2], dst[2]))
    return x.index_select(3, _nearest_index(src[3], dst[3]))


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation (SAFMN).

    Args:
        channels: C (a multiple of ``n_levels``).
        n_levels: channel groups / pyramid levels (official: 4).
        pool_offset: group ``i > 0`` is pooled by ``2**(i + pool_offset)`` (paper: 0;
            the NTIRE 2023 model: 1).
        bias: biases on the depth-wise and aggregation convs (the NTIRE model has none).

    Shapes: ``x`` (B, C, H, W) with H, W >= ``2**(n_levels - 1 + pool_offset)`` ->
    (B, C, H, W). :meth:`weights` is the modulation map (B, C, H, W) (GELU, unbounded).
    Keys ``mfr.<i>.weight`` (C/n, 1, 3, 3), ``aggr.weight`` (C, C, 1, 1).
    """

    def __init__(self, *, channels: int, n_levels: int = 4, pool_offset: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        if channels % n_levels:
            raise ValueError(f"channels {channels} is not a multiple of n_levels {n_levels}")
        self.n_levels, self.pool_offset = n_levels, pool_offset
        chunk = channels // n_levels
        self.mfr = nn.ModuleList(
            nn.Conv2d(chunk, chunk, 3, padding=1, groups=chunk, bias=bias) for _ in range(n_levels)
        )
        self.aggr = nn.Conv2d(channels, channels, 1, bias=bias)
        self.act = nn.GELU()

    @property
    def min_size(self) -> int:
        """Smallest input side (the coarsest level has at least one pixel)."""
        return 2 ** (self.n_levels - 1 + self.pool_offset)

    def _level(self, i: int, xc: Tensor) -> Tensor:
        """Level ``i`` of one channel group: (B, C/n, H, W) -> (B, C/n, H, W)."""
        if i == 0:
            return self.mfr[0](xc)
        factor = 2 ** (i + self.pool_offset)
        if _tracing():
            return nearest_resize_gather(self.mfr[i](adaptive_max_pool2d_gather(xc, factor)), xc)
        h, w = xc.shape[-2:]
        s = F.adaptive_max_pool2d(xc, (h // factor, w // factor))  # B, C/n, H/f, W/f
        return F.interpolate(self.mfr[i](s), size=(h, w), mode="nearest")

    def weights(self, x: Tensor) -> Tensor:
        """The modulation map ``gelu(aggr(levels))`` (B, C, H, W)."""
        chunks = x.chunk(self.n_levels, dim=1)
        out = torch.cat([self._level(i, xc) for i, xc in enumerate(chunks)], dim=1)
        return self.act(self.aggr(out))

    def forward(self, x: Tensor) -> Tensor:
        return self.weights(x) * x
