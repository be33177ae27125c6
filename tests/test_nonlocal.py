"""Non-local attention (chunked embedded Gaussian) and non-local sparse attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnsr.layers import nonlocal_attention as nl
from attnsr.layers.nonlocal_attention import (
    NonLocalAttention,
    NonLocalSparseAttention,
    auto_query_chunk,
)


def _tok(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("chunk", [7, 64, "auto"])
def test_chunked_equals_full(chunk: int | str) -> None:
    torch.manual_seed(0)
    m = NonLocalAttention(channels=16, reduction=2, chunk_size=None)
    x = torch.randn(2, 16, 12, 10)
    full = m(x)
    m.chunk_size = chunk
    torch.testing.assert_close(m(x), full, rtol=0, atol=1e-5)


def test_chunks_respect_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        seen.append(q.shape[1])
        return real(q, k, v, **kw)

    monkeypatch.setattr(nl.F, "scaled_dot_product_attention", spy)
    m = NonLocalAttention(channels=8, memory_budget_mb=0.25)  # 256 KiB
    m(torch.randn(1, 8, 32, 32))  # N = 1024 -> logits+probs of 1024 keys: 8 KiB per query
    assert max(seen) == 32 and sum(seen) == 1024
    assert auto_query_chunk(256 * 256, 1, 256.0) == 512  # 512 x 65536 x 2 floats = 256 MiB


def test_attention_rows_sum_to_one_and_reproduce_forward() -> None:
    torch.manual_seed(0)
    m = NonLocalAttention(channels=16)
    x = torch.randn(2, 16, 9, 7)
    q = torch.tensor([0, 13, 62])
    rows = m.attention_for_queries(x, q)
    assert rows.shape == (2, 3, 63)
    torch.testing.assert_close(rows.sum(-1), torch.ones(2, 3))
    z = rows @ _tok(m.g(x))  # B, 3, C/r
    expected = _tok(x)[:, q] + _tok(m.proj(z.transpose(1, 2)[..., None]))[:, :, :]
    torch.testing.assert_close(_tok(m(x))[:, q], expected.reshape(2, 3, 16), atol=1e-5, rtol=0)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    blocks = (NonLocalAttention(channels=8),
              NonLocalSparseAttention(channels=8, chunk_size=8, n_hashes=2))
    for m in blocks:
        m(torch.randn(1, 8, 6, 6)).square().sum().backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def _sparse(**kw: object) -> NonLocalSparseAttention:
    torch.manual_seed(0)
    return NonLocalSparseAttention(channels=16, reduction=4, **kw).eval()


def test_sparse_shape_and_eval_determinism() -> None:
    m = _sparse(n_hashes=3, chunk_size=10)
    x = torch.randn(2, 16, 11, 9)
    y = m(x)
    assert y.shape == x.shape
    torch.testing.assert_close(m(x), y, rtol=0, atol=0)
    other = _sparse(n_hashes=3, chunk_size=10)
    torch.testing.assert_close(other(x), y, rtol=0, atol=0)
    m.train()
    torch.manual_seed(5)
    a = m(x)
    torch.manual_seed(5)
    torch.testing.assert_close(m(x), a, rtol=0, atol=0)


def test_sparse_single_chunk_is_dense_attention() -> None:
    """With one chunk every token sees every other in every round: the result is dense
    softmax(q . k/|k|) v, whatever the hashes."""
    m = _sparse(n_hashes=2, chunk_size=64, res_scale=0.5)
    x = torch.randn(1, 16, 6, 7)  # 42 tokens < one chunk
    q, v = _tok(m.conv_match(x)), _tok(m.conv_assembly(x))
    k = F.normalize(q, dim=-1, eps=5e-5)
    dense = (q @ k.transpose(1, 2)).softmax(-1) @ v
    torch.testing.assert_close(_tok(m(x)), _tok(x) + 0.5 * dense, atol=1e-5, rtol=0)


def test_sparse_bucket_chunk_rows_sum_to_one_and_skip_padding() -> None:
    m = _sparse(n_hashes=2, chunk_size=8)
    x = torch.randn(1, 16, 5, 7)  # 35 tokens: 5 chunks, last one padded
    emb = _tok(m.conv_match(x))
    codes = m.hash_codes(emb)
    assert codes.shape == (1, 2, 35) and int(codes.max()) < m.n_buckets(35)
    rnd = m._bucket_round(emb, codes[:, 0])
    order, key_pos, probs = rnd.order, rnd.key_pos, rnd.probs
    assert probs.shape == (1, 5, 8, 24) and key_pos.shape == (1, 5, 24)
    assert torch.equal(order.sort(dim=1).values[0], torch.arange(35))
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 5, 8))
    pad = (key_pos >= 35)[:, :, None, :].expand_as(probs)
    assert pad.any() and probs[pad].abs().max() == 0


def test_sparse_query_rows_reproduce_forward_and_are_sparse() -> None:
    m = _sparse(n_hashes=3, chunk_size=8, res_scale=0.7)
    x = torch.randn(2, 16, 8, 9)  # 72 tokens, 9 chunks
    rows = m.attention_for_queries(x, torch.arange(72))
    assert rows.shape == (2, 72, 72)
    torch.testing.assert_close(rows.sum(-1), torch.ones(2, 72))
    assert int((rows > 0).sum(-1).max()) <= 3 * 3 * 8  # rounds x 3 chunks x chunk size
    expected = _tok(x) + 0.7 * rows @ _tok(m.conv_assembly(x))
    torch.testing.assert_close(_tok(m(x)), expected, atol=1e-5, rtol=0)


def test_bucket_count_is_even_and_capped() -> None:
    m = NonLocalSparseAttention(channels=16, chunk_size=144)
    assert m.n_buckets(10) == 2
    assert m.n_buckets(48 * 48) == 16
    assert m.n_buckets(5 * 144) == 6
    assert m.n_buckets(256 * 256) == 128
