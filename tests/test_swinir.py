"""SwinIR: presets, official key layout and parameter counts, detection of official
checkpoints (with their size-bound buffers), padding through the descriptor, SDPA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from attnsr.descriptor import describe
from attnsr.layers.window import relative_position_index, set_fused_attention
from attnsr.models import build_model, create_model
from attnsr.models.registry import config_to_dict
from attnsr.models.swinir import TINY, SwinIRConfig, convert_official, detect_swinir
from attnsr.resolver import load_pretrained


def _tiny(scale: int = 2, preset: str = "swinir", **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(preset, scale=scale, **{**TINY, **kw}).eval()


def _n_params(m: torch.nn.Module, skip: str = "") -> int:
    return sum(p.numel() for k, p in m.named_parameters() if not skip or skip not in k)


def test_swinir_light_x4_parameter_count() -> None:
    """Derived from the official structure: per block 30,810 (norms 240, qkv 10,980,
    proj 3,660, bias table 225x6, fc1 7,320, fc2 7,260); per group 6 blocks + conv 32,460;
    4 groups + conv_first 1,680 + two norms 240 + conv_after_body 32,460 + upsample.0
    25,968. Without the 24 bias tables this is the paper's 897K."""
    m = create_model("swinir_light", scale=4)
    assert _n_params(m) == 929_628
    assert _n_params(m, skip="relative_position_bias_table") == 897_228


def test_swinir_classical_layout_and_size() -> None:
    with torch.device("meta"):
        m = create_model("swinir", scale=4)
    keys = set(m.state_dict())
    for k in ("conv_first.weight", "patch_embed.norm.weight", "norm.bias",
              "layers.5.residual_group.blocks.5.attn.relative_position_bias_table",
              "layers.5.residual_group.blocks.5.attn.qkv.weight",
              "layers.5.residual_group.blocks.5.attn.proj.bias",
              "layers.5.residual_group.blocks.5.norm2.weight",
              "layers.5.residual_group.blocks.5.mlp.fc1.weight",
              "layers.5.residual_group.blocks.5.mlp.fc2.bias", "layers.5.conv.weight",
              "conv_after_body.weight", "conv_before_upsample.0.weight",
              "upsample.0.weight", "upsample.2.weight", "conv_last.weight"):
        assert k in keys, k
    assert "layers.6.conv.weight" not in keys and "upsample.4.weight" not in keys
    assert not any(k.endswith(("relative_position_index", "attn_mask", "mean")) for k in keys)
    assert _n_params(m) == 11_900_199  # the paper's 11.9M


def test_light_uses_one_step_upsampler() -> None:
    with torch.device("meta"):
        m = create_model("swinir_light", scale=3)
    keys = set(m.state_dict())
    assert "upsample.0.weight" in keys and "conv_before_upsample.0.weight" not in keys
    assert m.state_dict()["upsample.0.weight"].shape == (27, 60, 3, 3)


@pytest.mark.parametrize(
    ("preset", "scale", "extra"),
    [("swinir", 2, {}), ("swinir", 3, {}), ("swinir", 4, {"resi_connection": "3conv"}),
     ("swinir_light", 4, {}), ("swinir", 4, {"upsampler": "nearest+conv"}),
     ("swinir", 2, {"upsampler": "nearest+conv"})],
)
def test_odd_sizes_through_descriptor(preset: str, scale: int, extra: dict[str, Any]) -> None:
    model = _tiny(scale, preset, **extra)
    desc = describe(model)
    assert desc.multiple_of == 4 and not desc.traits.fp16_safe
    assert not desc.has_global_ops
    lr = torch.rand(1, 3, 13, 10)
    sr = desc(lr)
    assert sr.shape == (1, 3, 13 * scale, 10 * scale)
    assert float(sr.min()) >= 0.0 and float(sr.max()) <= 1.0
    # the descriptor's padding is what the model sees: same as padding by hand
    padded = torch.nn.functional.pad(lr, (0, 2, 0, 3), mode="reflect")
    with torch.inference_mode():
        direct = model(padded)[..., : 13 * scale, : 10 * scale].clamp(0, 1)
    torch.testing.assert_close(sr, direct)


def test_not_a_multiple_of_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="multiple of window"):
        _tiny()(torch.rand(1, 3, 10, 8))


def test_sdpa_and_math_paths_give_the_same_output() -> None:
    model = _tiny(4, embed_dim=16, depths=(2, 2), num_heads=(2, 4))
    for layer in model.layers:  # non-trivial biases so the bias path is exercised
        for blk in layer.residual_group.blocks:
            torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=0.5)
    lr = torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        fused = model(lr)
        set_fused_attention(model, False)
        math_out = model(lr)
    torch.testing.assert_close(fused, math_out, rtol=0, atol=1e-5)


def _official_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict plus the buffers the official module saves: every block's
    ``relative_position_index`` and the shifted blocks' ``attn_mask`` (64x64 training
    size), as in the released .pth files."""
    sd = dict(model.state_dict())
    ws = model.config.window_size
    for i, depth in enumerate(model.config.depths):
        for j in range(depth):
            pre = f"layers.{i}.residual_group.blocks.{j}."
            sd[pre + "attn.relative_position_index"] = relative_position_index(ws).clone()
            if j % 2:
                sd[pre + "attn_mask"] = torch.zeros((64 // ws) ** 2, ws * ws, ws * ws)
    return sd


CASES = [
    ("swinir", 2, {}),
    ("swinir", 3, {"depths": (2, 4, 2), "num_heads": (2, 3, 6), "embed_dim": 12}),
    ("swinir", 4, {"window_size": 8, "mlp_ratio": 4.0, "num_feat": 16}),
    ("swinir", 8, {}),
    ("swinir_light", 2, {}),
    ("swinir_light", 4, {"in_channels": 1}),
    ("swinir", 4, {"upsampler": "nearest+conv", "resi_connection": "3conv"}),
    ("swinir", 2, {"upsampler": "nearest+conv"}),
]


@pytest.mark.parametrize(("preset", "scale", "extra"), CASES)
def test_detect_recovers_config(preset: str, scale: int, extra: dict[str, Any]) -> None:
    model = _tiny(scale, preset, **extra)
    sd = _official_layout(model)
    found = detect_swinir(sd)
    assert found is not None
    rebuilt = build_model("swinir", {**found, "img_size": model.config.img_size})
    expected = config_to_dict(model.config)
    if expected["upsampler"] == "pixelshuffledirect":
        expected["num_feat"] = 64  # unused by the one-step upsampler: not in the weights
    assert config_to_dict(rebuilt.config) == expected
    rebuilt.load_state_dict(convert_official(sd), strict=True)


def test_official_file_loads_through_checkpoint_import(tmp_path: Path) -> None:
    model = _tiny(3, "swinir", depths=(2, 2), num_heads=(2, 2))
    path = tmp_path / "001_classicalSR_DF2K_s64w8_SwinIR-M_x3.pth"
    torch.save({"params": _official_layout(model)}, path)
    desc = load_pretrained(path)
    assert desc.arch == "swinir" and desc.scale == 3 and desc.multiple_of == 4
    lr = torch.rand(1, 3, 9, 11)
    torch.testing.assert_close(desc(lr), describe(model)(lr))


def test_detect_rejects_other_layouts() -> None:
    assert detect_swinir({"conv_first.weight": torch.zeros(8, 3, 3, 3)}) is None
    edsr = create_model("edsr_baseline", scale=2, n_resblocks=1, n_feats=8).state_dict()
    assert detect_swinir(edsr) is None
    denoise = {k: v for k, v in _official_layout(_tiny()).items()
               if not k.startswith(("upsample", "conv_before"))}
    assert detect_swinir(denoise) is None  # no upsampler: a denoising model


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SwinIRConfig(embed_dim=10, num_heads=(3,), depths=(2,))
    with pytest.raises(ValueError):
        SwinIRConfig(upsampler="bilinear")
    with pytest.raises(ValueError):
        SwinIRConfig(depths=(2, 2), num_heads=(2,))
