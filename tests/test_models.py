"""Registry-wide model tests: every registered preset at x2, x3, x4 on odd sizes.

Forward/backward tests use each architecture module's ``TINY`` config overrides (a
module-level dict; the convention every architecture follows) so they stay fast;
parameter counts are checked on the full official presets (built on the meta device).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from attnsr.checkpoint import save_pretrained
from attnsr.descriptor import describe
from attnsr.models import create_model, get_arch, get_preset, list_models
from attnsr.models.base import SRModel
from attnsr.models.flops import count_flops, count_params, paper_lr_size
from attnsr.resolver import load_pretrained, resolve

H, W = 17, 23  # odd on purpose: exercises padding to window multiples
MODELS = list_models()
CASES = [(name, s) for name in MODELS for s in (2, 3, 4) if s in get_preset(name).scales]


def tiny_overrides(name: str) -> dict[str, Any]:
    """The ``TINY`` overrides of the module defining preset ``name``'s architecture."""
    module = sys.modules[get_arch(get_preset(name).arch).model_cls.__module__]
    return dict(getattr(module, "TINY", {}))


def tiny_model(name: str, scale: int) -> SRModel:
    torch.manual_seed(0)
    return create_model(name, scale=scale, **tiny_overrides(name))


def _lr(h: int = H, w: int = W) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_registry_has_the_cnn_models() -> None:
    expected = {"bicubic", "edsr_baseline", "rcan", "rcan_small", "pan", "imdn", "rlfn",
                "rlfn_s", "rlfn_ntire"}
    assert expected <= set(MODELS)


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_forward_shape_and_finite(name: str, scale: int) -> None:
    desc = describe(tiny_model(name, scale))
    with torch.no_grad():
        sr = desc.run(_lr())
    assert sr.shape == (1, 3, scale * H, scale * W)
    assert bool(torch.isfinite(sr).all())


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_every_parameter_gets_a_gradient(name: str, scale: int) -> None:
    model = tiny_model(name, scale).train()
    sr = describe(model).run(_lr())
    if not any(True for _ in model.parameters()):  # bicubic: nothing to train
        assert not sr.requires_grad
        return
    weights = torch.rand(sr.shape, generator=torch.Generator().manual_seed(1))
    (sr * weights).sum().backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert no_grad == []


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_save_load_round_trip(tmp_path: Path, name: str, scale: int) -> None:
    model = tiny_model(name, scale).eval()
    save_pretrained(model, tmp_path / "ckpt", name=name)
    desc = load_pretrained(tmp_path / "ckpt")
    assert desc.config == model.config and desc.name == name
    original = resolve(model)  # the same runner contract (memory order) as the loaded one
    with torch.no_grad():  # run(): pads to the model's minimum size (RLFN: 15)
        assert torch.equal(desc.run(_lr(8, 16)), original.run(_lr(8, 16)))


@pytest.mark.parametrize("name", MODELS)
def test_tiny_input_is_padded_to_what_the_model_needs(name: str) -> None:
    desc = describe(tiny_model(name, 2))
    assert desc(_lr(5, 6)).shape == (1, 3, 10, 12)


@pytest.mark.parametrize("name", MODELS)
def test_traits_are_consistent(name: str) -> None:
    traits = tiny_model(name, 2).traits()
    assert traits.multiple_of >= 1 and traits.min_size >= 1 and traits.receptive_field >= 1


@pytest.mark.parametrize(
    ("name", "global_ops"),
    [("rcan", True), ("imdn", True), ("pan", False), ("edsr_baseline", False), ("rlfn", False)],
)
def test_global_ops_trait(name: str, global_ops: bool) -> None:
    assert tiny_model(name, 2).traits().has_global_ops is global_ops


# Published / code-derived parameter counts (full presets).
PARAM_COUNTS = [
    ("rcan", 4, 15_592_379),  # RCAN paper / official code: "15.59M"
    ("rcan", 2, 15_444_667),
    ("pan", 4, 272_419),  # PAN paper
    ("pan", 2, 261_403),
    ("imdn", 4, 715_176),  # IMDN README
    ("edsr_baseline", 2, 1_369_859),  # EDSR-PyTorch baseline: 1.37M
    ("edsr_baseline", 3, 1_554_499),
    ("edsr_baseline", 4, 1_517_571),  # "1.518M"
    ("rlfn", 4, 543_740),  # RLFN paper: 0.543M
    ("rlfn_ntire", 4, 317_218),  # bytedance/RLFN README: 0.317M
]


@pytest.mark.parametrize(("name", "scale", "expected"), PARAM_COUNTS)
def test_parameter_counts(name: str, scale: int, expected: int) -> None:
    with torch.device("meta"):
        model = create_model(name, scale=scale)
    assert count_params(model) == expected


# Multi-Adds for a 1280x720 output, as published (G): IMDN/PAN papers, RLFN paper.
PAPER_MACS = [("imdn", 4, 40.9), ("imdn", 2, 158.8), ("pan", 4, 28.2), ("pan", 3, 39.0),
              ("rlfn", 4, 29.8), ("edsr_baseline", 2, 316.3), ("rcan", 4, 917.6)]


@pytest.mark.parametrize(("name", "scale", "giga"), PAPER_MACS)
def test_macs_match_papers(name: str, scale: int, giga: float) -> None:
    with torch.device("meta"):
        model = create_model(name, scale=scale)
    macs = count_flops(model, lr_size=paper_lr_size(scale))
    assert macs / 1e9 == pytest.approx(giga, rel=0.01)


class _NotMetaFriendly(torch.nn.Module):
    """A conv whose forward reads a value (impossible on meta): forces the fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * float(x.mean().item() >= -1)


def test_flops_fallback_scales_linearly() -> None:
    macs = count_flops(_NotMetaFriendly(), lr_size=(100, 60))
    assert macs == 100 * 60 * 5 * 3 * 9


def test_count_params_trainable_only() -> None:
    model = tiny_model("rcan", 2)
    model.sub_mean.requires_grad_(False)
    assert count_params(model) - count_params(model, trainable_only=True) == 12


def _run_cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    return CliRunner().invoke(app, ["models", *args])


def test_models_cli_json_lists_every_model() -> None:
    import json

    result = _run_cli("--json", "--no-flops", "--scale", "4")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    rows = {r["name"]: r for r in out["models"]}
    assert sorted(rows) == MODELS
    assert rows["rcan"]["params"] == 15_592_379 and rows["rcan"]["global_ops"] is True
    assert rows["pan"]["scales"] == [2, 3, 4]
    assert isinstance(out["pretrained"], list)


def test_models_cli_table_and_unsupported_scale() -> None:
    result = _run_cli("--no-flops", "--scale", "8")
    assert result.exit_code == 0, result.output
    assert "rcan" in result.output and "15.74M" in result.output  # RCAN x8


def test_models_row_macs() -> None:
    from attnsr.cli.models_cmd import model_row

    row = model_row("pan", 4)
    assert row["params"] == 272_419 and row["macs"] / 1e9 == pytest.approx(28.16, abs=0.01)
    assert model_row("pan", 8)["params"] is None  # PAN has no x8


OFFICIAL_KEYS = {
    "rcan": ["sub_mean.weight", "sub_mean.bias", "head.0.weight",
             "body.9.body.19.body.3.conv_du.2.weight", "body.9.body.20.weight", "body.10.weight",
             "tail.0.0.weight", "tail.0.2.weight", "tail.1.weight", "add_mean.bias"],
    "edsr_baseline": ["sub_mean.weight", "head.0.weight", "body.15.body.2.weight",
                      "body.16.weight", "tail.0.2.bias", "tail.1.weight", "add_mean.weight"],
    "pan": ["conv_first.weight", "SCPA_trunk.15.PAConv.k4.weight", "SCPA_trunk.0.k1.0.weight",
            "trunk_conv.weight", "upconv1.weight", "att1.conv.weight", "HRconv1.weight",
            "upconv2.weight", "att2.conv.bias", "HRconv2.weight", "conv_last.weight"],
    "imdn": ["fea_conv.weight", "IMDB6.c4.weight", "IMDB1.c5.weight", "IMDB3.cca.conv_du.0.weight",
             "c.0.weight", "LR_conv.weight", "upsampler.0.weight"],
    "rlfn_ntire": ["conv_1.weight", "block_4.c3_r.weight", "block_1.esa.conv_f.weight",
                   "block_2.c5.bias", "conv_2.weight", "upsampler.0.weight"],
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_official_key_names_at_x4(name: str) -> None:
    with torch.device("meta"):
        keys = set(create_model(name, scale=4).state_dict())
    assert set(OFFICIAL_KEYS[name]) <= keys


@pytest.mark.parametrize("name", ["edsr_baseline", "rcan"])
def test_mean_shift_arithmetic_on_0_255(name: str) -> None:
    """With every conv zeroed, only add_mean acts: the output is the DIV2K mean, which
    checks the [0, 1] -> [0, 255] -> [0, 1] scaling around the official mean shift."""
    model = tiny_model(name, 2).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.zero_()
                mod.bias.zero_()
        sr = model(_lr(5, 7))
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1).expand(1, 3, 10, 14)
    torch.testing.assert_close(sr, mean)
    assert float(model.sub_mean.bias.detach()[0]) == pytest.approx(-0.4488 * 255)


def test_attnsr_net_without_attention_is_the_plain_residual_ablation() -> None:
    """``attention=False`` drops exactly the gates (depthwise context + 1x1 per block),
    and the declared receptive field bounds the measured one in both variants."""
    from attnsr.layers.contextual import ContextualPixelAttention

    gated = create_model("attnsr_lite", scale=4)
    plain = create_model("attnsr_lite", scale=4, attention=False)
    c, n = gated.config.channels, gated.config.n_blocks
    assert not any(isinstance(m, ContextualPixelAttention) for m in plain.modules())
    assert count_params(gated) - count_params(plain) == n * (c * 9 + c + c * c + c)
    for model in (gated, plain):
        rf = model.traits().receptive_field
        x = torch.rand(1, 3, 2 * rf + 9, 2 * rf + 9, requires_grad=True)
        out = model(x)
        centre = out.shape[-1] // 2
        out[0, :, centre, centre].sum().backward()
        reach = x.grad[0].abs().sum(0).nonzero()
        radius = (reach - (rf + 4)).abs().max()
        assert 0 < int(radius) <= rf


@pytest.mark.parametrize("attention", [True, False])
def test_attnsr_net_deepen_keeps_the_function_and_then_learns(attention: bool) -> None:
    """``deepen`` inserts identity blocks: same output as the source, old blocks kept in
    order, and the new blocks receive gradient (their zeroed conv is trainable)."""
    from attnsr.models.attnsr_net import deepen

    torch.manual_seed(0)
    small = create_model("attnsr_lite", scale=2, channels=8, n_blocks=3, attention=attention)
    for p in small.parameters():  # trained-looking weights, not the init
        p.data.normal_(0, 0.1)
    small.eval()
    big = deepen(small, [0, 2, 2]).eval()
    assert big.config.n_blocks == 6
    x = torch.rand(2, 3, 11, 13)
    with torch.no_grad():
        assert torch.allclose(big(x), small(x), rtol=0, atol=1e-6)
    for old, new in ((0, 0), (1, 2), (2, 3)):
        for k, v in small.body[old].state_dict().items():
            assert torch.equal(big.body[new].state_dict()[k], v)
    assert float(big.body[1].conv2.weight.detach().abs().sum()) == 0.0
    big.train()
    big(x).mean().backward()
    assert float(big.body[5].conv2.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="0..2"):
        deepen(small, [3])


@pytest.mark.parametrize("attention", [True, False])
def test_attnsr_net_prune_keeps_the_channels_that_carry(attention: bool) -> None:
    """``prune`` to the same width is the identity; when some stream and hidden channels
    are dead (no weight writes or reads them) it drops exactly those and computes the same
    function; and it checks the width."""
    from attnsr.models.attnsr_net import prune

    torch.manual_seed(0)
    model = create_model("attnsr_lite", scale=2, channels=12, n_blocks=3, attention=attention)
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    model.eval()
    x = torch.rand(2, 3, 11, 13)
    same = prune(model, 12, x).eval()
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    dead = [1, 4, 7, 10]  # stream channels nothing writes or reads
    with torch.no_grad():
        model.head.weight[dead] = 0
        model.head.bias[dead] = 0
        model.fuse.weight[dead] = 0
        model.fuse.bias[dead] = 0
        model.fuse.weight[:, dead] = 0
        model.tail.weight[:, dead] = 0
        for i, block in enumerate(model.body):
            block.conv1.weight[:, dead] = 0
            block.conv2.weight[dead] = 0
            block.conv2.bias[dead] = 0
            if attention:
                block.attn.gate.weight[:, dead] = 0
            hidden_dead = [(i + k) % 12 for k in (0, 3, 6, 9)]  # never read by conv2
            block.conv2.weight[:, hidden_dead] = 0
    small = prune(model, 8, x).eval()
    assert small.config.channels == 8
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="1..12"):
        prune(model, 13, x)
    # reference: another network (a fine-tune of the same parent) narrowed to the same
    # channels, so the two narrowed copies still correspond and can be interpolated
    other = create_model("attnsr_lite", scale=2, channels=12, n_blocks=3, attention=attention)
    for p in other.parameters():
        p.data.normal_(0, 0.1)
    like = prune(other.eval(), 8, x, reference=model)
    live = [c for c in range(12) if c not in dead]
    assert torch.equal(like.head.weight, other.head.weight[live])
    assert torch.equal(like.tail.weight, other.tail.weight[:, live])


@pytest.mark.parametrize("name", MODELS)
def test_reparam_training_form_folds_back_exactly(name: str) -> None:
    """``model.reparam``: attaching the branches keeps the function; after the branches
    move, folding them gives plain convs (the unexpanded state-dict keys and shapes) that
    compute what the branch sums computed."""
    from attnsr.layers.reparam import attach_reparam, fold_reparam

    model = tiny_model(name, 4 if 4 in get_preset(name).scales else get_preset(name).scales[0])
    model.eval()
    x = _lr(16, 16)
    plain_keys = {k: v.shape for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    n = attach_reparam(model)
    if name == "bicubic":  # no conv at all: nothing to expand
        assert n == 0
        return
    assert n > 0
    with torch.no_grad():
        assert torch.allclose(model(x), before, rtol=0, atol=1e-6)
        for pname, p in model.named_parameters():
            if pname.endswith((".skip", ".project")):
                p.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(len(pname)))
        trained = model(x)
    assert not torch.allclose(trained, before, rtol=0, atol=1e-4)
    fold_reparam(model)
    assert {k: v.shape for k, v in model.state_dict().items()} == plain_keys
    with torch.no_grad():
        assert torch.allclose(model(x), trained, rtol=0, atol=1e-5)
