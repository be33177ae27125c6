"""Swin window attention: partition helpers, SDPA vs math, the shift mask, capture."""

from __future__ import annotations

import pytest
import torch

from attnsr.layers.window import (
    SwinTransformerBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

CPU = torch.device("cpu")


def test_partition_reverse_identity_and_layout() -> None:
    x = torch.randn(2, 16, 24, 5)
    w = window_partition(x, 8)
    assert w.shape == (2 * 2 * 3, 64, 5)
    torch.testing.assert_close(window_reverse(w, 8, 16, 24), x, rtol=0, atol=0)
    # window 1 of image 0 is rows 0..7, cols 8..15, flattened row-major
    torch.testing.assert_close(w[1], x[0, :8, 8:16].reshape(64, 5), rtol=0, atol=0)
    # image 1 starts after the 6 windows of image 0
    torch.testing.assert_close(w[6], x[1, :8, :8].reshape(64, 5), rtol=0, atol=0)


def test_relative_position_index_matches_definition() -> None:
    ws = 4
    idx = relative_position_index(ws)
    rc = [(i // ws, i % ws) for i in range(ws * ws)]
    expected = torch.tensor(
        [[(a[0] - b[0] + ws - 1) * (2 * ws - 1) + a[1] - b[1] + ws - 1 for b in rc] for a in rc]
    )
    assert torch.equal(idx, expected)
    assert int(idx.max()) == (2 * ws - 1) ** 2 - 1


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_equals_math(masked: bool) -> None:
    torch.manual_seed(0)
    attn = WindowAttention(dim=24, window_size=4, num_heads=3)
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    x = torch.randn(2 * 6, 16, 24)  # B=2, 6 windows of 4x4 in an 8x12 map
    mask = shifted_window_mask(8, 12, 4, 2, CPU) if masked else None
    fused = attn(x, mask)
    attn.use_sdpa = False
    torch.testing.assert_close(fused, attn(x, mask), rtol=0, atol=1e-5)


def test_block_sdpa_equals_math_with_shift() -> None:
    torch.manual_seed(0)
    blk = SwinTransformerBlock(dim=16, num_heads=2, window_size=4, shift_size=2)
    x = torch.randn(2, 8 * 12, 16)
    fused = blk(x, (8, 12))
    blk.attn.use_sdpa = False
    torch.testing.assert_close(fused, blk(x, (8, 12)), rtol=0, atol=1e-5)


def test_probabilities_sum_to_one_and_return_attn_keeps_the_output() -> None:
    torch.manual_seed(0)
    attn = WindowAttention(dim=16, window_size=4, num_heads=2)
    x = torch.randn(6, 16, 16)
    mask = shifted_window_mask(8, 12, 4, 2, CPU)
    out, probs = attn(x, mask, return_attn=True)
    assert probs.shape == (6, 2, 16, 16)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, 2, 16))
    torch.testing.assert_close(attn(x, mask), out, rtol=0, atol=1e-5)  # fused path


def _wrapped_flags(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Per window token of the shifted map: (came from a wrapped row, wrapped col)."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    flags = torch.stack([rows >= h - shift, cols >= w - shift], dim=-1)[None].float()
    return window_partition(flags, ws)  # nW, ws*ws, 2


@pytest.mark.parametrize("size", [(8, 12), (4, 4)])
def test_mask_blocks_attention_across_wrapped_regions(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    h, w, ws, s = *size, 4, 2
    attn = WindowAttention(8, ws, 2)
    nw = (h // ws) * (w // ws)
    _, probs = attn(torch.randn(nw, ws * ws, 8), shifted_window_mask(h, w, ws, s, CPU),
                    return_attn=True)
    flags = _wrapped_flags(h, w, ws, s)
    same = (flags[:, :, None, :] == flags[:, None, :, :]).all(-1)  # nW, N, N
    same = same[:, None].expand_as(probs)
    assert probs[~same].max() < 1e-30  # zero in float32 terms (official mask value -100)
    assert probs[same].min() > 1e-6
    assert (~same).any()  # the test really exercises the mask


def test_shifted_block_locality_by_perturbation() -> None:
    """A change at original pixel (0, 0) reaches, in a shifted block, only the s x s
    top-left corner: its shifted window also holds wrapped bottom/right pixels, which
    the mask must keep apart."""
    torch.manual_seed(0)
    h, w, ws, s = 8, 8, 4, 2
    blk = SwinTransformerBlock(dim=8, num_heads=2, window_size=ws, shift_size=s).eval()
    x = torch.randn(1, h * w, 8)
    y = x.clone()
    y[0, 0] += torch.randn(8)  # not a constant: LayerNorm would remove that
    diff = (blk(y, (h, w)) - blk(x, (h, w))).abs().sum(-1).view(h, w)
    changed = diff > 1e-6
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[:s, :s] = True
    assert torch.equal(changed, expected)


def test_any_multiple_of_window_size_works() -> None:
    torch.manual_seed(0)
    blk = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=2)
    for h, w in [(4, 4), (12, 20), (28, 8)]:
        x = torch.randn(1, h * w, 8)
        fused = blk(x, (h, w))
        blk.attn.use_sdpa = False
        torch.testing.assert_close(fused, blk(x, (h, w)), rtol=0, atol=1e-5)
        blk.attn.use_sdpa = True
    assert shifted_window_mask(12, 20, 4, 2, CPU).shape == (15, 16, 16)
    assert shifted_window_mask(12, 20, 4, 2, CPU) is shifted_window_mask(12, 20, 4, 2, CPU)
    with pytest.raises(ValueError, match="multiple of window size"):
        blk(torch.randn(1, 30, 8), (5, 6))


def test_state_dict_holds_only_parameters() -> None:
    blk = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=2)
    keys = set(blk.state_dict())
    assert not any("relative_position_index" in k or "attn_mask" in k for k in keys)
    assert "attn.relative_position_bias_table" in keys
    assert blk.attn.relative_position_bias_table.shape == (49, 2)


def test_cached_index_and_mask_survive_inference_mode() -> None:
    """The per-size caches may be filled under torch.inference_mode (inference first,
    then training in one process): they must still work with autograd."""
    blk = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=2)
    x = torch.randn(1, 20 * 12, 8)
    with torch.inference_mode():
        relative_position_index.cache_clear()
        shifted_window_mask.cache_clear()
        blk(x, (20, 12))
    blk(x, (20, 12)).sum().backward()
    assert blk.attn.relative_position_bias_table.grad is not None
