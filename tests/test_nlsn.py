"""NLSN: official body layout, detection of official checkpoints, global reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from attnsr.checkpoint import detect_architecture
from attnsr.descriptor import describe
from attnsr.models import build_model, create_model
from attnsr.models.nlsn import TINY, body_layout, detect_nlsn
from attnsr.models.registry import config_to_dict
from attnsr.resolver import load_pretrained


def _tiny(scale: int = 2, **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("nlsn_light", scale=scale, **{**TINY, **kw}).eval()


def test_official_body_layout() -> None:
    kinds = body_layout(32, 8)  # the paper's model
    assert len(kinds) == 38 and kinds[-1] == "conv"
    assert [i for i, k in enumerate(kinds) if k == "attn"] == [0, 9, 18, 27, 36]
    m = create_model("nlsn", scale=4)
    keys = set(m.state_dict())
    for k in ("sub_mean.weight", "add_mean.bias", "head.0.weight", "body.0.conv_match.0.weight",
              "body.0.conv_assembly.0.weight", "body.1.body.2.weight",
              "body.9.conv_match.0.bias", "body.19.weight", "tail.0.2.weight", "tail.1.weight"):
        assert k in keys, k
    assert m.traits().has_global_ops


@pytest.mark.parametrize(
    ("scale", "extra"),
    [(2, {}), (3, {"attn_every": 2, "n_resblocks": 4}), (4, {"reduction": 2}),
     (4, {"n_resblocks": 3, "attn_every": 8})],
)
def test_detect_recovers_config(scale: int, extra: dict[str, Any]) -> None:
    model = _tiny(scale, **extra)
    found = detect_nlsn(model.state_dict())
    assert found is not None
    rebuilt = build_model("nlsn", {**found, "n_hashes": 2, "chunk_size": 16})
    assert config_to_dict(rebuilt.config) == config_to_dict(model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_official_file_loads_and_is_not_mistaken_for_edsr(tmp_path: Path) -> None:
    model = _tiny(2)
    arch, _, _ = detect_architecture(model.state_dict())
    assert arch == "nlsn"
    edsr = create_model("edsr_baseline", scale=2, n_resblocks=2, n_feats=8)
    assert detect_nlsn(edsr.state_dict()) is None
    path = tmp_path / "model_x2.pt"
    torch.save(model.state_dict(), path)
    desc = load_pretrained(path)
    assert desc.arch == "nlsn" and desc.scale == 2 and desc.has_global_ops
    # hashing settings are not in the weights: use the tiny ones to compare outputs
    desc.model = build_model("nlsn", {**config_to_dict(desc.config), "n_hashes": 2,
                                      "chunk_size": 16})
    desc.model.load_state_dict(model.state_dict())
    desc.model.eval()
    lr = torch.rand(1, 3, 7, 9)
    torch.testing.assert_close(desc(lr), describe(model)(lr))


def test_odd_size_forward_is_deterministic_in_eval() -> None:
    desc = describe(_tiny(3))
    lr = torch.rand(2, 3, 11, 7)
    sr = desc(lr)
    assert sr.shape == (2, 3, 33, 21)
    torch.testing.assert_close(desc(lr), sr, rtol=0, atol=0)


def test_attention_reaches_beyond_the_local_receptive_field() -> None:
    model = _tiny(2, chunk_size=1024)  # one chunk: every pixel sees every other
    rf = model.traits().receptive_field
    lr = torch.rand(1, 3, 24, 24)
    bumped = lr.clone()
    bumped[..., 0, 0] += 0.5
    with torch.no_grad():
        diff = (model(bumped) - model(lr)).abs()
    far = diff[..., 2 * (rf + 2):, 2 * (rf + 2):]  # HR pixels beyond the conv stack's reach
    assert far.numel() > 0 and float(far.max()) > 0
