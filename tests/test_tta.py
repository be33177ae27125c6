"""``--tta``: the x8 geometric self-ensemble, equal to a hand-made ensemble and exact
under tiling for a local model."""

from __future__ import annotations

import numpy as np
import torch

from attnsr.inference.upscale import Upscaler
from attnsr.models.registry import create_model
from attnsr.resolver import resolve
from attnsr.runner import describe, dihedral


def test_dihedral_ops_are_the_eight_symmetries_and_invert() -> None:
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = {tuple(dihedral(x, op).flatten().tolist()) for op in range(8)}
    assert len(seen) == 8
    for op in range(8):
        assert torch.equal(dihedral(dihedral(x, op), op, inverse=True), x)


def test_tta_equals_a_hand_made_ensemble() -> None:
    lr = torch.rand(1, 3, 14, 17, generator=torch.Generator().manual_seed(0))
    plain = resolve("attnsr-x2")
    tta = resolve("attnsr-x2", tta=True)
    with torch.inference_mode():
        manual = []
        for op in range(8):
            t = lr
            if op & 1:
                t = t.flip(-1)
            if op & 2:
                t = t.flip(-2)
            if op & 4:
                t = t.transpose(-2, -1)
            sr = plain.run(t.contiguous(memory_format=torch.channels_last))
            if op & 4:
                sr = sr.transpose(-2, -1)
            if op & 2:
                sr = sr.flip(-2)
            if op & 1:
                sr = sr.flip(-1)
            manual.append(sr)
        expected = torch.stack(manual).mean(0).clamp(0, 1)
    got = tta(lr)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(got, plain(lr), atol=1e-4)  # it does change the output


def test_tiled_tta_equals_whole_image_tta() -> None:
    torch.manual_seed(0)
    model = create_model("attnsr_lite", scale=2, channels=8, n_blocks=1)
    whole = Upscaler(describe(model), tile=0, tta=True, device="cpu")
    up = Upscaler(describe(model), tile=16, tta=True, device="cpu")  # raised: exact size
    lr = np.random.default_rng(0).random((up.tile + 40, up.tile + 30, 3)).astype(np.float32)
    assert 0 < up.tile < lr.shape[1]
    np.testing.assert_allclose(up.upscale_hwc(lr, dtype=np.float32),
                               whole.upscale_hwc(lr, dtype=np.float32), rtol=0, atol=1e-5)
