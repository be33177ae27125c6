"""Swin window self-attention (Liu et al., ICCV 2021), as used by SwinIR.

Feature maps are tokens ``(B, H*W, C)``. Attention runs inside non-overlapping
``ws x ws`` windows; every other block cyclically shifts the map by ``ws // 2`` so that
information crosses window borders, and a mask keeps tokens that were not neighbours
before the shift (they wrapped around the border) from attending to each other.

Nothing here is tied to a training size: the relative-position index depends only on
``ws`` and the shift mask is rebuilt (and cached) for each input size; neither is saved
in checkpoints.

Explainability: :class:`WindowAttention` returns its probabilities with
``return_attn=True`` (forcing the reference math path); :mod:`attnsr.explain.capture`
calls it so from a forward hook.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The official SwinIR mask value. exp(-100) ~ 4e-44 is zero in float32 for practical
# purposes, and a finite value keeps softmax NaN-free and exporters happy.
MASK_VALUE = -100.0


def window_partition(x: Tensor, ws: int) -> Tensor:
    """Split ``x`` ``(B, H, W, C)`` (H, W multiples of ``ws``) into windows
    ``(nW*B, ws*ws, C)``, windows in row-major order, batch-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)  # B, H/ws, ws, W/ws, ws, C
    x = x.permute(0, 1, 3, 2, 4, 5)  # B, H/ws, W/ws, ws, ws, C
    return x.reshape(-1, ws * ws, C)  # nW*B, ws*ws, C


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(nW*B, ws*ws, C)`` -> ``(B, h, w, C)``."""
    H, W, C = h, w, windows.shape[-1]
    B = windows.shape[0] // ((H // ws) * (W // ws))
    x = windows.view(B, H // ws, W // ws, ws, ws, C)  # B, H/ws, W/ws, ws, ws, C
    x = x.permute(0, 1, 3, 2, 4, 5)  # B, H/ws, ws, W/ws, ws, C
    return x.reshape(B, H, W, C)  # B, H, W, C


# The two builders below are cached per argument tuple. They run with inference mode
# off and on an explicit device, so a tensor first built under ``torch.inference_mode``
# or a ``torch.device(...)`` context is still usable later by autograd / elsewhere.


@lru_cache(maxsize=16)
@torch.inference_mode(False)
def relative_position_index(ws: int, device: torch.device | None = None) -> Tensor:
    """Index into the ``((2ws-1)^2, heads)`` bias table for every token pair of a window:
    a ``(ws*ws, ws*ws)`` long tensor, entry ``[i, j]`` encodes ``pos_i - pos_j``
    (row offset major), as the official Swin code does. Cached; do not modify."""
    if device is not None and device != torch.device("cpu"):
        return relative_position_index(ws).to(device)
    cpu = torch.device("cpu")
    ar = torch.arange(ws, device=cpu)
    coords = torch.stack(torch.meshgrid(ar, ar, indexing="ij"))
    coords = coords.flatten(1)  # 2, ws*ws
    rel = coords[:, :, None] - coords[:, None, :]  # 2, ws*ws, ws*ws
    rel = rel + (ws - 1)  # offsets now in [0, 2ws-2]
    return rel[0] * (2 * ws - 1) + rel[1]  # ws*ws, ws*ws


@lru_cache(maxsize=32)
@torch.inference_mode(False)
def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """Additive mask ``(nW, ws*ws, ws*ws)`` for attention in a map cyclically shifted by
    ``-shift``: 0 where two tokens come from the same region of the unshifted map,
    :data:`MASK_VALUE` where they do not (they only met because of the wrap-around).
    Cached per (size, device); do not modify."""
    region = torch.zeros(1, h, w, 1, device="cpu")
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for n, (hs, wsl) in enumerate((h, w) for h in bounds for w in bounds):
        region[:, hs, wsl, :] = n
    labels = window_partition(region, ws).squeeze(-1)  # nW, ws*ws
    differ = labels[:, None, :] != labels[:, :, None]  # nW, ws*ws, ws*ws
    mask = torch.zeros(differ.shape, device="cpu").masked_fill_(differ, MASK_VALUE)
    return mask.to(device)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Parameter names follow the official code (``qkv``, ``proj``,
    ``relative_position_bias_table``). ``use_sdpa`` selects
    ``F.scaled_dot_product_attention``; False runs the explicit reference math (same
    numbers within float error).
    """

    def __init__(
        self, dim: int, window_size: int, num_heads: int, *, qkv_bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.use_sdpa = use_sdpa
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> Tensor:
        """The bias added to the logits: ``(heads, ws*ws, ws*ws)``."""
        table = self.relative_position_bias_table
        idx = relative_position_index(self.window_size, table.device)
        n = self.window_size**2
        bias = table[idx.view(-1)].view(n, n, -1)  # N, N, heads
        return bias.permute(2, 0, 1)  # heads, N, N

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, return_attn: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``x`` ``(nW*B, N, C)`` with ``N = ws*ws``; ``mask`` ``(nW, N, N)`` additive or
        None. Returns ``(nW*B, N, C)`` (and the probabilities when ``return_attn``)."""
        BW, N, C = x.shape
        nW = mask.shape[0] if mask is not None else 1
        qkv = self.qkv(x).view(BW // nW, nW, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each B, nW, heads, N, d
        bias = self.position_bias()  # heads, N, N
        if mask is not None:
            bias = bias + mask.unsqueeze(1).to(bias.dtype)  # nW, heads, N, N
        if return_attn or not self.use_sdpa:
            out, attn = self._math_attention(q, k, v, bias)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = out.permute(0, 1, 3, 2, 4).reshape(BW, N, C)  # nW*B, N, C
        out = self.proj(out)
        return (out, attn.flatten(0, 1)) if return_attn else out

    def _math_attention(
        self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Reference path: softmax(q k^T * scale + bias) v; q, k, v ``(B, nW, heads, N, d)``."""
        logits = (q * self.scale) @ k.transpose(-2, -1) + bias  # B, nW, heads, N, N
        attn = logits.softmax(dim=-1)
        return attn @ v, attn  # B, nW, heads, N, d

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class Mlp(nn.Module):
    """Token-wise feed-forward ``fc1 -> GELU -> fc2`` (official names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """Pre-norm Swin block: ``x + (S)W-MSA(LN(x))``, then ``x + MLP(LN(x))``.

    ``shift_size`` 0 gives regular windows, ``ws // 2`` the shifted ones. Input tokens
    ``(B, H*W, C)`` with ``x_size = (H, W)``, both multiples of ``window_size``.
    """

    def __init__(
        self, dim: int, num_heads: int, *, window_size: int = 8, shift_size: int = 0,
        mlp_ratio: float = 2.0, qkv_bias: bool = True, use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size {shift_size} must be in [0, window_size)")
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim=dim, window_size=window_size, num_heads=num_heads, qkv_bias=qkv_bias,
            use_sdpa=use_sdpa,
        )
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        """``x`` ``(B, H*W, C)`` -> ``(B, H*W, C)``."""
        H, W = x_size
        B, L, C = x.shape
        ws, s = self.window_size, self.shift_size
        if H % ws or W % ws:
            raise ValueError(f"feature size {H}x{W} is not a multiple of window size {ws}")
        h = self.norm1(x).view(B, H, W, C)
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))  # B, H, W, C (shifted)
        mask = shifted_window_mask(H, W, ws, s, x.device) if s else None
        h = self.attn(window_partition(h, ws), mask)  # nW*B, ws*ws, C
        h = window_reverse(h, ws, H, W)  # B, H, W, C
        if s:
            h = torch.roll(h, shifts=(s, s), dims=(1, 2))
        x = x + h.reshape(B, L, C)  # B, H*W, C
        return x + self.mlp(self.norm2(x))


def set_fused_attention(module: nn.Module, enabled: bool) -> None:
    """Switch every :class:`WindowAttention` inside ``module`` to the SDPA path
    (``enabled``) or to the reference math path."""
    for m in module.modules():
        if isinstance(m, WindowAttention):
            m.use_sdpa = enabled
