"""SPAN: Conv3XC re-parameterisation, the parameter-free attention block, the official key
layouts (written here: keys and shapes with random values), strict loading and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.checkpoint import detect_architecture, load_checkpoint
from attnsr.layers.parameter_free import SPAB
from attnsr.layers.reparam import Conv3XC, fuse_conv3xc
from attnsr.models.flops import count_flops, count_params
from attnsr.models.registry import build_model, create_model
from attnsr.models.span import SPAN, SPANConfig, _convert_span, _detect_span

DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)


def _randomise(module: nn.Module, std: float = 0.1) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * std)
    return module


# ----------------------------------------------------------------------------- Conv3XC


def test_fusion_by_hand_one_channel() -> None:
    """1 -> 1 channels, gain 1: kernel = c * a * K + s at the centre,
    bias = c * (b1 + b0 * sum(K)) + b2 + bs."""
    conv = Conv3XC(in_channels=1, out_channels=1, gain=1)
    K = torch.arange(9.0).view(1, 1, 3, 3) / 10
    with torch.no_grad():
        conv.conv[0].weight.fill_(2.0)
        conv.conv[0].bias.fill_(0.5)
        conv.conv[1].weight.copy_(K)
        conv.conv[1].bias.fill_(-1.0)
        conv.conv[2].weight.fill_(3.0)
        conv.conv[2].bias.fill_(0.25)
        conv.sk.weight.fill_(7.0)
        conv.sk.bias.fill_(1.0)
    weight, bias = fuse_conv3xc(conv.sk, *conv.conv)
    expected = 3.0 * 2.0 * K
    expected[0, 0, 1, 1] += 7.0
    torch.testing.assert_close(weight, expected)
    torch.testing.assert_close(bias, torch.tensor([3.0 * (-1.0 + 0.5 * 3.6) + 0.25 + 1.0]))


@pytest.mark.parametrize(("cin", "cout", "gain"), [(3, 8, 2), (6, 6, 2), (4, 5, 3)])
def test_fused_equals_branches_including_borders(cin: int, cout: int, gain: int) -> None:
    conv = _randomise(Conv3XC(in_channels=cin, out_channels=cout, gain=gain))
    x = torch.randn(2, cin, 7, 9)
    branches = conv.train()(x)  # pad -> 1x1 -> 3x3 -> 1x1, plus the 1x1 skip
    on_the_fly = conv.eval()(x)  # one 3x3 conv with the fused kernel
    fused = Conv3XC(in_channels=cin, out_channels=cout, fused=True)
    weight, bias = conv.fused_weights()
    with torch.no_grad():
        fused.eval_conv.weight.copy_(weight)
        fused.eval_conv.bias.copy_(bias)
    torch.testing.assert_close(on_the_fly, branches, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused(x), branches, rtol=1e-5, atol=1e-5)
    assert set(fused.state_dict()) == {"eval_conv.weight", "eval_conv.bias"}
    assert set(conv.state_dict()) == {"sk.weight", "sk.bias"} | {
        f"conv.{i}.{p}" for i in range(3) for p in ("weight", "bias")}


# ------------------------------------------------------------------- attention block


def test_spab_is_the_parameter_free_formula() -> None:
    """out = (h3 + x) * (sigmoid(h3) - 0.5) with h3 = c3(silu(c2(silu(c1(x))))); the second
    output is the *activated* first conv (the official in-place SiLU)."""
    block = _randomise(SPAB(channels=4, fused=True)).eval()
    x = torch.randn(1, 4, 6, 5)

    def conv(m: Conv3XC, t: Tensor) -> Tensor:
        return F.conv2d(t, m.eval_conv.weight, m.eval_conv.bias, padding=1)

    a1 = F.silu(conv(block.c1_r, x))
    h3 = conv(block.c3_r, F.silu(conv(block.c2_r, a1)))
    out, second = block(x)
    torch.testing.assert_close(out, (h3 + x) * (torch.sigmoid(h3) - 0.5))
    torch.testing.assert_close(second, a1)
    assert not list(block.attn.parameters())  # the attention has no parameters


def test_attention_is_zero_where_the_response_is_zero() -> None:
    block = SPAB(channels=2, fused=True)
    with torch.no_grad():
        for p in block.c3_r.parameters():
            p.zero_()
    out, _ = block(torch.randn(1, 2, 4, 4))
    assert torch.equal(out, torch.zeros_like(out))  # sigmoid(0) - 0.5 = 0 gates all off


# ------------------------------------------------------------------------ the network


def _reference_forward(sd: dict[str, Tensor], lr: Tensor, n_blocks: int) -> Tensor:
    """SPAN's official forward on fused (``eval_conv``) weights, written out with F.conv2d."""

    def c3(name: str, t: Tensor) -> Tensor:
        return F.conv2d(t, sd[f"{name}.eval_conv.weight"], sd[f"{name}.eval_conv.bias"], padding=1)

    fea = c3("conv_1", (lr - DIV2K_MEAN) * 255.0)
    x, b1, last_a1 = fea, fea, fea
    for i in range(1, n_blocks + 1):
        a1 = F.silu(c3(f"block_{i}.c1_r", x))
        h3 = c3(f"block_{i}.c3_r", F.silu(c3(f"block_{i}.c2_r", a1)))
        x = (h3 + x) * (torch.sigmoid(h3) - 0.5)
        b1 = x if i == 1 else b1
        last_a1 = a1
    cat = torch.cat([fea, c3("conv_2", x), b1, last_a1], 1)
    out = F.conv2d(cat, sd["conv_cat.weight"], sd["conv_cat.bias"])
    out = F.conv2d(out, sd["upsampler.0.weight"], sd["upsampler.0.bias"], padding=1)
    return F.pixel_shuffle(out, 2)


def test_forward_matches_the_official_dataflow() -> None:
    model = _randomise(SPAN(SPANConfig(scale=2, feature_channels=6, n_blocks=3)), 0.05).eval()
    lr = torch.rand(1, 3, 8, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(lr), _reference_forward(model.state_dict(), lr, 3),
                                   rtol=1e-5, atol=1e-5)


def test_fuse_keeps_the_outputs_and_gives_the_ntire_layout() -> None:
    model = _randomise(SPAN(SPANConfig(scale=3, feature_channels=6, n_blocks=2, fused=False)),
                       0.05).eval()
    fused = model.fuse()
    assert fused.config.fused and not model.config.fused
    lr = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        ref = model.train()(lr)  # the training branches
        torch.testing.assert_close(model.eval()(lr), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fused(lr), ref, rtol=1e-4, atol=1e-4)
    assert all(".eval_conv." in k or k.startswith(("conv_cat.", "upsampler.0."))
               for k in fused.state_dict())
    assert model.export_module().config.fused


# ------------------------------------------------------------- official key layouts


def _official_training_layout(feats: int, n_blocks: int, scale: int) -> dict[str, Tensor]:
    """hongyuanyu/SPAN's state dict: every Conv3XC has sk, conv.{0,1,2} and eval_conv."""
    sd: dict[str, Tensor] = {}

    def conv3xc(name: str, cin: int, cout: int) -> None:
        shapes = {"sk": (cout, cin, 1, 1), "conv.0": (2 * cin, cin, 1, 1),
                  "conv.1": (2 * cout, 2 * cin, 3, 3), "conv.2": (cout, 2 * cout, 1, 1),
                  "eval_conv": (cout, cin, 3, 3)}
        for part, shape in shapes.items():
            sd[f"{name}.{part}.weight"] = torch.randn(shape) * 0.05
            sd[f"{name}.{part}.bias"] = torch.randn(shape[0]) * 0.05

    conv3xc("conv_1", 3, feats)
    for i in range(1, n_blocks + 1):
        for c in ("c1_r", "c2_r", "c3_r"):
            conv3xc(f"block_{i}.{c}", feats, feats)
    sd["conv_cat.weight"] = torch.randn(feats, 4 * feats, 1, 1) * 0.05
    sd["conv_cat.bias"] = torch.randn(feats) * 0.05
    conv3xc("conv_2", feats, feats)
    sd["upsampler.0.weight"] = torch.randn(3 * scale * scale, feats, 3, 3) * 0.05
    sd["upsampler.0.bias"] = torch.randn(3 * scale * scale) * 0.05
    return sd


def _ntire_layout(feats: int, n_blocks: int, scale: int) -> dict[str, Tensor]:
    """NTIRE2024_ESR model_zoo/team38_span_ch28_slim.pth: only the fused eval convs."""
    return {k: v for k, v in _official_training_layout(feats, n_blocks, scale).items()
            if not any(f".{p}." in k for p in ("sk", "conv.0", "conv.1", "conv.2"))}


def test_training_layout_detected_converted_and_loaded_strictly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    sd = _official_training_layout(feats=8, n_blocks=3, scale=4)
    assert _detect_span(sd) == {"scale": 4, "in_channels": 3, "feature_channels": 8,
                                "n_blocks": 3, "fused": False, "gain": 2}
    path = tmp_path / "spanx4_ch8.pth"
    torch.save({"params": sd}, path)  # BasicSR's wrapper
    runner = load_checkpoint(path)
    assert runner.model.arch_name == "span" and not runner.model.config.fused
    # the stored eval_conv copies are dropped: the authors recompute them from the branches
    assert set(runner.model.state_dict()) == {k for k in sd if ".eval_conv." not in k}
    assert set(_convert_span(sd)) == set(runner.model.state_dict())


def test_ntire_layout_detected_and_loaded_strictly(tmp_path: Path) -> None:
    torch.manual_seed(2)
    sd = _ntire_layout(feats=6, n_blocks=2, scale=4)
    config = _detect_span(sd)
    assert config == {"scale": 4, "in_channels": 3, "feature_channels": 6, "n_blocks": 2,
                      "fused": True}
    model = build_model("span", config)
    model.load_state_dict(_convert_span(dict(sd)), strict=True)
    path = tmp_path / "team38_span.pth"
    torch.save(sd, path)
    runner = load_checkpoint(path)  # SPAN, or DSCF (the same deploy-form network)
    lr = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(runner.model.eval()(lr), model.eval()(lr))


def test_detector_refuses_other_layouts() -> None:
    sd = _official_training_layout(feats=6, n_blocks=2, scale=2)
    assert _detect_span({k: v for k, v in sd.items() if not k.startswith("conv_cat.")}) is None
    mixed = dict(_ntire_layout(feats=6, n_blocks=2, scale=2))
    mixed.update({k: v for k, v in sd.items() if k.startswith("conv_2.")})
    assert _detect_span(mixed) is None  # branches in one conv, fused in the others
    rlfn = create_model("rlfn_ntire", scale=4, feature_channels=8, mid_channels=8, n_blocks=2,
                        esa_channels=4).state_dict()
    assert _detect_span(rlfn) is None
    arch, _, _ = detect_architecture(sd, scale=2)
    assert arch == "span"


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("name", "params", "giga_256"), [
    ("span_ntire", 150_688, 9.83),  # team38_span_ch28_slim.pth: 150,688 values; NTIRE'24: 9.83G
    ("dscf", 130_828, 8.54),  # also the size of team39_spantiny_ch26_slim.pth: 130,828 values
    ("span", 426_288, 27.87),
])
def test_preset_sizes(name: str, params: int, giga_256: float) -> None:
    with torch.device("meta"):
        model = create_model(name, scale=4)
    assert count_params(model) == params
    assert count_flops(model, lr_size=(256, 256)) / 1e9 == pytest.approx(giga_256, abs=0.01)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="in_channels=3"):
        SPANConfig(in_channels=1)
    with pytest.raises(ValueError, match=">= 1"):
        SPANConfig(n_blocks=0)


@pytest.mark.parametrize("fused", [True, False])
def test_own_state_dicts_are_claimed_by_span_only(fused: bool) -> None:
    """What tests/test_checkpoint.py skips for archs with a ``convert``: our own state
    dicts (both forms) are detected as SPAN, with exactly their keys, and no other
    registered detector claims them."""
    from attnsr.checkpoint import _expected_shapes
    from attnsr.models.registry import get_arch, list_archs

    sd = create_model("span_ntire", scale=3, feature_channels=6, n_blocks=2,
                      fused=fused).state_dict()
    arch, config, converted = detect_architecture(sd)
    assert arch == "span" and config["fused"] is fused and converted.keys() == sd.keys()
    assert _expected_shapes(arch, config) == {k: tuple(v.shape) for k, v in sd.items()}
    others = [a for a in list_archs() if a != "span" and get_arch(a).detect is not None]
    assert not [a for a in others if get_arch(a).detect(sd) is not None]
