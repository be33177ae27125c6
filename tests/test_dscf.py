"""DSCF (NTIRE 2025 efficient-SR winner): the ``dscf`` preset of SPAN, its official key
layout (written here: the 44 keys and shapes of ``team23_DSCF.pth`` with random values),
strict loading, published size, and the parameter-free attention by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from attnsr.checkpoint import load_checkpoint
from attnsr.explain import AttentionRecorder
from attnsr.layers.parameter_free import ParameterFreeAttention
from attnsr.models.flops import count_flops, count_params
from attnsr.models.registry import create_model, get_preset


def _dscf_official_layout(feats: int = 26, n_blocks: int = 6, scale: int = 4) -> dict[str, Tensor]:
    """``model_zoo/team23_DSCF.pth`` (Amazingren/NTIRE2025_ESR): fused ``eval_conv`` 3x3
    convs, a 1x1 ``conv_cat`` over four maps and a one-step upsampler; no other keys."""
    gen = torch.Generator().manual_seed(0)
    shapes: dict[str, tuple[int, ...]] = {"conv_1.eval_conv": (feats, 3, 3, 3)}
    for i in range(1, n_blocks + 1):
        for conv in ("c1_r", "c2_r", "c3_r"):
            shapes[f"block_{i}.{conv}.eval_conv"] = (feats, feats, 3, 3)
    shapes["conv_cat"] = (feats, 4 * feats, 1, 1)
    shapes["conv_2.eval_conv"] = (feats, feats, 3, 3)
    shapes["upsampler.0"] = (3 * scale * scale, feats, 3, 3)
    sd: dict[str, Tensor] = {}
    for name, shape in shapes.items():
        sd[f"{name}.weight"] = torch.randn(shape, generator=gen) * 0.02
        sd[f"{name}.bias"] = torch.randn(shape[0], generator=gen) * 0.02
    return sd


def test_official_layout_is_read_strictly_as_the_dscf_preset(tmp_path: Path) -> None:
    sd = _dscf_official_layout()
    assert len(sd) == 44
    path = tmp_path / "team23_DSCF.pth"
    torch.save(sd, path)  # a bare state dict, as committed
    runner = load_checkpoint(path)
    assert runner.arch == "span" and runner.scale == 4
    assert runner.model.config == create_model("dscf", scale=4).config
    loaded = runner.model.state_dict()
    assert set(loaded) == set(sd)  # strict: no key added, dropped or renamed
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    assert runner.num_params == 130_828


def test_preset_is_the_published_size() -> None:
    """Challenge figures (NTIRE2025_ESR results.txt): 0.131 M parameters, 8.54 G FLOPs
    (multiply-accumulates) on a 256x256 LR input."""
    assert get_preset("dscf").arch == "span"
    with torch.device("meta"):
        model = create_model("dscf", scale=4)
    assert count_params(model) == 130_828
    assert count_flops(model, lr_size=(256, 256)) / 1e9 == pytest.approx(8.54, abs=0.01)


def test_training_form_fuses_to_the_official_layout() -> None:
    """``fused=False`` (Conv3XC branches, what one trains) re-parameterises into exactly
    the keys and shapes of the published file, with the same outputs."""
    torch.manual_seed(0)
    model = create_model("dscf", scale=4, fused=False).eval()
    fused = model.fuse()
    layout = {k: tuple(v.shape) for k, v in _dscf_official_layout().items()}
    assert {k: tuple(v.shape) for k, v in fused.state_dict().items()} == layout
    lr = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fused(lr), model(lr), rtol=1e-4, atol=1e-4)


def test_parameter_free_attention_by_hand() -> None:
    """``(f + x) * (sigmoid(f) - 0.5)``: sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2."""
    attn = ParameterFreeAttention()
    assert not list(attn.parameters()) and not attn.state_dict()
    ln3 = torch.log(torch.tensor(3.0))
    f = torch.stack([ln3, torch.tensor(0.0), -ln3]).view(1, 3, 1, 1)
    x = torch.tensor([1.0, 5.0, 2.0]).view(1, 3, 1, 1)
    expected = torch.stack([(ln3 + 1) * 0.25, torch.tensor(0.0), (2 - ln3) * -0.25])
    torch.testing.assert_close(attn(f, x).flatten(), expected)
    torch.testing.assert_close(attn.weights(f).flatten(), torch.tensor([0.25, 0.0, -0.25]))
    torch.testing.assert_close(attn.gate(f).flatten(), torch.tensor([0.75, 0.5, 0.25]))


def test_explain_records_one_gate_per_block() -> None:
    torch.manual_seed(0)
    model = create_model("dscf", scale=4).eval()
    lr = torch.rand(1, 3, 10, 12)
    with torch.no_grad(), AttentionRecorder(model) as rec:
        model(lr)
    assert sorted(rec.maps) == [f"block_{i}.attn" for i in range(1, 7)]
    for m in rec.maps.values():
        assert m.kind == "spatial" and tuple(m.tensor.shape) == (1, 26, 10, 12)
        assert bool(((m.tensor >= 0) & (m.tensor <= 1)).all())
