"""Non-local attention over all pixels of a feature map, in memory linear in the pixels.

Two blocks:

* :class:`NonLocalAttention` -- the embedded Gaussian of Wang et al. (CVPR 2018):
  ``z_i = x_i + W sum_j softmax_j(theta(x_i) . phi(x_j)) g(x_j)``. Time is quadratic
  in the number of pixels N, but memory is not: queries are processed in chunks
  sized so that one chunk's ``chunk x N`` logits stay within a memory budget (the
  full N x N matrix of a 256 x 256 map is 17 GB in float32). ``chunk_size=None``
  builds the full matrix: the reference the chunked path is tested against.
* :class:`NonLocalSparseAttention` -- the NLSA of Mei et al. (CVPR 2021, NLSN):
  pixels are hashed into buckets by spherical LSH (a random rotation followed by an
  argmax over ``[xR, -xR]``), sorted by bucket, cut into chunks, and each chunk attends
  to itself and its two neighbour chunks. Several hash rounds are combined with
  weights ``softmax_r(logsumexp of round r's logits)``, i.e. as if the rounds' key sets
  were one softmax. Time and memory grow ~linearly with N.

Both expose ``attention_for_queries(x, query_indices) -> (B, len(q), N)``: the
attention rows of some query pixels (flattened ``h * W + w``) over all pixels, for
explainability tools.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_BYTES_PER_FLOAT = 4


def auto_query_chunk(n_keys: int, batch: int, budget_mb: float = 256.0) -> int:
    """Largest query chunk whose ``(batch, chunk, n_keys)`` logits *and* probabilities
    (two float32 copies) fit in ``budget_mb`` MiB; at least 1."""
    per_query = 2 * batch * n_keys * _BYTES_PER_FLOAT
    return max(1, int(budget_mb * 2**20) // per_query)


def _tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``."""
    return x.flatten(2).transpose(1, 2)


class NonLocalAttention(nn.Module):
    """Embedded-Gaussian non-local block with a residual: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: input channels C.
        reduction: the embeddings theta, phi, g have ``C // reduction`` channels.
        chunk_size: queries per chunk; ``"auto"`` derives it from ``memory_budget_mb``;
            ``None`` computes the full ``N x N`` matrix (reference, small inputs only).
        memory_budget_mb: budget of one chunk's logits + probabilities ("auto" only).
    """

    def __init__(
        self, channels: int, *, reduction: int = 2,
        chunk_size: int | None | Literal["auto"] = "auto", memory_budget_mb: float = 256.0,
    ) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.chunk_size, self.memory_budget_mb = chunk_size, memory_budget_mb
        self.theta = nn.Conv2d(channels, inner, 1)
        # no bias: it would add a per-query constant to the logits, which softmax ignores
        self.phi = nn.Conv2d(channels, inner, 1, bias=False)
        self.g = nn.Conv2d(channels, inner, 1)
        self.proj = nn.Conv2d(inner, channels, 1)

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Query, key, value tokens, each ``(B, N, C/r)``."""
        return _tokens(self.theta(x)), _tokens(self.phi(x)), _tokens(self.g(x))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self._embed(x)
        if self.chunk_size is None:
            y = (q @ k.transpose(1, 2)).softmax(dim=-1) @ v  # B, N, C/r via N x N
        else:
            y = self._chunked(q, k, v)
        y = y.transpose(1, 2).reshape(B, -1, H, W)  # B, C/r, H, W
        return x + self.proj(y)

    def _chunked(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """softmax(q k^T) v one query chunk at a time: ``(B, N, d)`` each -> ``(B, N, d)``."""
        B, N, _ = q.shape
        step = self.chunk_size
        if step == "auto":
            step = auto_query_chunk(N, B, self.memory_budget_mb)
        parts = [
            F.scaled_dot_product_attention(q[:, i : i + step], k, v, scale=1.0)
            for i in range(0, N, step)
        ]
        return torch.cat(parts, dim=1)

    def attention_for_queries(self, x: Tensor, query_indices: Tensor) -> Tensor:
        """Attention probabilities of the query pixels ``query_indices`` (flattened
        ``h * W + w``) over all N pixels: ``(B, len(query_indices), N)``, rows sum to 1."""
        q, k, _ = self._embed(x)
        return (q[:, query_indices] @ k.transpose(1, 2)).softmax(dim=-1)


def _flat_index(idx: Tensor, n: int) -> Tensor:
    """Per-batch token indices ``(B, ...)`` into a ``(B * n, C)`` view, flattened."""
    b = torch.arange(idx.shape[0], device=idx.device).view(-1, *([1] * (idx.dim() - 1)))
    return (idx + b * n).reshape(-1)


def _gather_tokens(t: Tensor, idx: Tensor) -> Tensor:
    """``t`` ``(B, L, C)`` gathered at ``idx`` ``(B, ...)`` -> ``(B, ..., C)``.
    (``index_select`` on a flat view: much faster than ``gather`` with expanded indices.)"""
    B, L, C = t.shape
    return t.reshape(B * L, C).index_select(0, _flat_index(idx, L)).view(*idx.shape, C)


def _scatter_tokens(src: Tensor, order: Tensor) -> Tensor:
    """Inverse of gathering by a permutation: ``out[b, order[b, i]] = src[b, i]``;
    ``src`` ``(B, L, C)``, ``order`` ``(B, L)``."""
    B, L, C = src.shape
    flat = src.new_zeros(B * L, C).index_copy(0, _flat_index(order, L), src.reshape(B * L, C))
    return flat.view(B, L, C)


class _Round(NamedTuple):
    """One hash round's chunked attention (``nc`` chunks, ``nk`` keys per chunk)."""

    order: Tensor  # (B, N): the token at each sorted slot
    key_pos: Tensor  # (B, nc, nk): token index of each key, N for padding
    weights: Tensor  # (B, nc, cs, nk): exp(logit - max), unnormalised
    total: Tensor  # (B, nc, cs, 1): row sums of ``weights``
    lse: Tensor  # (B, nc, cs): logsumexp of each query's logits

    @property
    def probs(self) -> Tensor:
        """Softmax probabilities ``(B, nc, cs, nk)``."""
        return self.weights / self.total


class NonLocalSparseAttention(nn.Module):
    """Non-Local Sparse Attention (NLSA, Mei et al. 2021): ``(B, C, H, W) -> (B, C, H, W)``.

    Module names follow the official NLSN code (``conv_match.0``: k x k conv to
    ``C // reduction`` matching embeddings; ``conv_assembly.0``: 1x1 conv giving the
    values), so its checkpoints load. Queries are the raw matching embeddings, keys the
    L2-normalised ones, as in the paper's code.

    Differences from the official code: padding tokens (when N is not a multiple of
    ``chunk_size``) are masked out instead of duplicated; a chunk never attends to the
    same neighbour twice (when there are fewer than three chunks); ties inside a bucket
    are ordered by position; in eval mode the random rotations come from a generator
    seeded with ``seed``, so the output is deterministic (training draws fresh ones).

    Args:
        channels: C.  reduction: matching embeddings have ``C // reduction`` channels.
        n_hashes: hash rounds.  chunk_size: tokens per chunk.
        k_size: kernel of ``conv_match``.  res_scale: ``out = x + res_scale * attention``.
        max_buckets: cap on the number of buckets per round (official: 128).
    """

    def __init__(
        self, channels: int, *, reduction: int = 4, n_hashes: int = 4, chunk_size: int = 144,
        k_size: int = 3, res_scale: float = 1.0, max_buckets: int = 128, seed: int = 0,
    ) -> None:
        super().__init__()
        self.n_hashes, self.chunk_size, self.res_scale = n_hashes, chunk_size, res_scale
        self.max_buckets, self.seed = max_buckets, seed
        self.conv_match = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, k_size, padding=k_size // 2)
        )
        self.conv_assembly = nn.Sequential(nn.Conv2d(channels, channels, 1))

    def n_buckets(self, n: int) -> int:
        """Buckets per round for ``n`` tokens: about one chunk each, even, capped."""
        b = n // self.chunk_size
        return max(2, min(b + b % 2, self.max_buckets))

    def _rotations(self, dim: int, n_buckets: int, like: Tensor) -> Tensor:
        """Random rotations ``(dim, n_hashes, n_buckets // 2)``, seeded in eval mode."""
        shape = (dim, self.n_hashes, n_buckets // 2)
        if self.training:
            return torch.randn(shape, device=like.device, dtype=like.dtype)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn(shape, generator=gen).to(like.device, like.dtype)

    def hash_codes(self, emb: Tensor) -> Tensor:
        """Spherical LSH bucket of every token: ``(B, N, d)`` -> ``(B, n_hashes, N)`` long."""
        rot = self._rotations(emb.shape[-1], self.n_buckets(emb.shape[1]), emb)
        r = torch.einsum("bnd,dhk->bhnk", emb.detach(), rot)  # B, hashes, N, buckets/2
        return torch.cat([r, -r], dim=-1).argmax(dim=-1)

    def _bucket_round(self, emb: Tensor, codes: Tensor) -> _Round:
        """One hash round of chunked attention on the matching embeddings ``emb``
        ``(B, N, d)`` with bucket ``codes`` ``(B, N)``: sort, chunk, attend to the own
        and neighbour chunks."""
        B, N, _ = emb.shape
        cs = self.chunk_size
        pos = torch.arange(N, device=emb.device)
        order = (codes * N + pos).argsort(dim=1)  # by bucket, then by position
        nc = math.ceil(N / cs)
        slots = F.pad(order, (0, nc * cs - N), value=N).view(B, nc, cs)  # B, nc, cs
        offsets = sorted({0, -1 % nc, 1 % nc})  # own chunk and its neighbours, no repeats
        key_pos = torch.cat([slots.roll(-o, dims=1) for o in offsets], dim=2)  # B, nc, nk
        emb_pad = F.pad(emb, (0, 0, 0, 1))  # a zero token at index N
        q = _gather_tokens(emb_pad, slots)  # B, nc, cs, d
        k = F.normalize(_gather_tokens(emb_pad, key_pos), dim=-1, eps=5e-5)  # B, nc, nk, d
        logits = q @ k.transpose(-2, -1)  # B, nc, cs, nk
        if nc * cs > N:  # padding keys live in at most 3 chunks' key sets: mask only those
            pad = key_pos >= N  # B, nc, nk
            hit = pad.any(dim=2).any(dim=0).nonzero().squeeze(1)
            logits[:, hit] = logits[:, hit].masked_fill(pad[:, hit, None, :], -math.inf)
        # A stable softmax that also yields the logsumexp, with few passes over the big
        # tensor; normalising is left to the caller (cheaper after the value product).
        # The shift is detached: both results are invariant to it.
        peak = logits.detach().amax(dim=-1, keepdim=True)  # B, nc, cs, 1 (own chunk valid)
        weights = logits.sub_(peak).exp_()  # B, nc, cs, nk
        total = weights.sum(dim=-1, keepdim=True)
        return _Round(order, key_pos, weights, total, (peak + total.log()).squeeze(-1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        N = H * W
        emb = _tokens(self.conv_match(x))  # B, N, d
        val = F.pad(_tokens(self.conv_assembly(x)), (0, 0, 0, 1))  # B, N+1, C
        codes = self.hash_codes(emb)
        outs, lses = [], []
        for r in range(self.n_hashes):  # one round at a time bounds memory
            rnd = self._bucket_round(emb, codes[:, r])
            y = (rnd.weights @ _gather_tokens(val, rnd.key_pos)) / rnd.total  # B, nc, cs, C
            y, lse = y.reshape(B, -1, C)[:, :N], rnd.lse.reshape(B, -1, 1)[:, :N]  # sorted
            outs.append(_scatter_tokens(y, rnd.order))  # B, N, C
            lses.append(_scatter_tokens(lse, rnd.order).squeeze(-1))  # B, N
        weights = torch.stack(lses, dim=1).softmax(dim=1)  # B, hashes, N
        y = (torch.stack(outs, dim=1) * weights[..., None]).sum(dim=1)  # B, N, C
        return x + self.res_scale * y.transpose(1, 2).reshape(B, C, H, W)

    def attention_for_queries(self, x: Tensor, query_indices: Tensor) -> Tensor:
        """Effective attention rows (all rounds combined) of the query pixels over all N
        pixels: ``(B, len(query_indices), N)``; rows sum to 1, and
        ``forward(x) = x + res_scale * rows @ conv_assembly(x)`` at those pixels."""
        B, N = x.shape[0], x.shape[-2] * x.shape[-1]
        emb = _tokens(self.conv_match(x))
        codes = self.hash_codes(emb)
        rows, lses = [], []
        for r in range(self.n_hashes):
            rnd = self._bucket_round(emb, codes[:, r])
            slot = rnd.order.argsort(dim=1)[:, query_indices]  # B, nq: sorted slot of queries
            c, i = slot // self.chunk_size, slot % self.chunk_size
            b = torch.arange(B, device=x.device)[:, None]
            p = rnd.weights[b, c, i] / rnd.total[b, c, i]  # B, nq, nk
            row = torch.zeros(B, len(query_indices), N + 1, dtype=p.dtype, device=p.device)
            rows.append(row.scatter_add_(2, rnd.key_pos[b, c], p)[..., :N])
            lses.append(rnd.lse.reshape(B, -1)[b, slot])  # B, nq
        weights = torch.stack(lses, dim=1).softmax(dim=1)  # B, hashes, nq
        return (torch.stack(rows, dim=1) * weights[..., None]).sum(dim=1)
