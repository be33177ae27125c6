"""attnsr.checkpoint: our format round trips, official-checkpoint detection, safe loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from attnsr.checkpoint import (
    detect_architecture,
    read_metadata,
    save_pretrained,
    unwrap_state_dict,
)
from attnsr.errors import CheckpointError, ConfigError, ModelNotFoundError
from attnsr.models import create_model
from attnsr.models.registry import config_to_dict
from attnsr.resolver import load_pretrained

# Tiny official-style configs: (preset, scale, overrides)
OFFICIAL_CASES = [
    ("rcan", 4, {"n_resgroups": 2, "n_resblocks": 3, "n_feats": 16, "reduction": 4}),
    ("rcan", 3, {"n_resgroups": 3, "n_resblocks": 1, "n_feats": 8, "reduction": 2}),
    ("edsr_baseline", 2, {"n_resblocks": 3, "n_feats": 8}),
    ("edsr_baseline", 8, {"n_resblocks": 1, "n_feats": 8}),
    ("pan", 4, {"nf": 8, "unf": 6, "nb": 3}),
    ("imdn", 3, {"nf": 16, "num_modules": 3}),
    ("rlfn_ntire", 4, {"feature_channels": 10, "mid_channels": 12, "n_blocks": 2}),
    ("rlfn", 2, {"feature_channels": 8, "n_blocks": 3, "esa_channels": 4}),
    ("safmn", 3, {"dim": 8, "n_blocks": 2}),
    ("safmn_ntire", 4, {"dim": 8, "n_blocks": 1}),
    ("bsrn", 2, {"feature_channels": 16, "n_blocks": 2}),
    ("bsrn_s", 4, {"feature_channels": 16, "n_blocks": 3}),
]


def _model(preset: str, scale: int, **overrides: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(preset, scale=scale, **overrides).eval()


def _lr() -> torch.Tensor:
    return torch.rand(1, 3, 17, 19, generator=torch.Generator().manual_seed(1))


def _same_outputs(desc: Any, model: torch.nn.Module) -> bool:
    """The loaded weights give exactly the original's outputs (the original put in the
    runner's memory order first: NHWC on CPU changes the float summation order)."""
    model.to(memory_format=desc.memory_format())
    with torch.no_grad():
        return torch.equal(desc.model(_lr()), model(_lr()))


@pytest.mark.parametrize("form", ["dir", "file"])
@pytest.mark.parametrize(("preset", "scale", "overrides"), OFFICIAL_CASES[::2])
def test_round_trip_identical_config_and_outputs(
    tmp_path: Path, form: str, preset: str, scale: int, overrides: dict[str, Any]
) -> None:
    model = _model(preset, scale, **overrides)
    path = tmp_path / ("ckpt" if form == "dir" else "model.safetensors")
    save_pretrained(model, path, name=f"my-{preset}")
    desc = load_pretrained(path)
    assert desc.config == model.config
    assert desc.name == f"my-{preset}" and desc.arch == model.arch_name and desc.scale == scale
    assert _same_outputs(desc, model)


def test_directory_layout_and_metadata(tmp_path: Path) -> None:
    model = _model("pan", 2, nf=8, unf=6, nb=1)
    save_pretrained(model, tmp_path / "out", extra_metadata={"trained_on": "T91"})
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta == {"format": "attnsr", "version": 1, "arch": "pan", "name": "pan",
                    "config": config_to_dict(model.config), "trained_on": "T91"}
    # the weights file carries the same header, so it also loads on its own
    assert read_metadata(tmp_path / "out" / "model.safetensors") == meta
    assert load_pretrained(tmp_path / "out" / "model.safetensors").config == model.config


def test_extra_metadata_cannot_override_core_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arch"):
        save_pretrained(_model("pan", 2, nf=8, unf=6, nb=1), tmp_path / "x",
                        extra_metadata={"arch": "rcan"})


def test_save_accepts_descriptor_and_keeps_its_name(tmp_path: Path) -> None:
    desc = load_pretrained(_save(tmp_path, _model("imdn", 2, nf=8, num_modules=1), "imdn-tiny"))
    out = save_pretrained(desc, tmp_path / "again.safetensors")
    assert load_pretrained(out).name == "imdn-tiny"


def _save(tmp_path: Path, model: torch.nn.Module, name: str) -> Path:
    return save_pretrained(model, tmp_path / name, name=name)


def _official_layouts(sd: dict[str, torch.Tensor]) -> list[Any]:
    """The ways official / BasicSR / DataParallel checkpoints wrap a state dict."""
    return [
        sd,
        {"params": {f"module.{k}": v for k, v in sd.items()}},
        {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        {"state_dict": sd, "epoch": 10},
    ]


@pytest.mark.parametrize(("preset", "scale", "overrides"), OFFICIAL_CASES)
def test_official_checkpoint_detected_with_hyper_parameters(
    tmp_path: Path, preset: str, scale: int, overrides: dict[str, Any]
) -> None:
    model = _model(preset, scale, **overrides)
    for i, obj in enumerate(_official_layouts(model.state_dict())):
        path = tmp_path / f"official_{i}.pth"
        torch.save(obj, path)
        desc = load_pretrained(path, scale=scale if preset == "pan" and scale != 4 else None)
        assert desc.arch == model.arch_name
        assert desc.config == model.config, f"layout {i}"
        assert _same_outputs(desc, model)


def test_rcan_detection_reads_groups_blocks_reduction() -> None:
    model = _model("rcan", 8, n_resgroups=3, n_resblocks=2, n_feats=16, reduction=8)
    arch, config, _ = detect_architecture(model.state_dict())
    assert arch == "rcan"
    assert config == {"scale": 8, "n_resgroups": 3, "n_resblocks": 2, "n_feats": 16,
                      "reduction": 8}


def test_plain_safetensors_official_checkpoint_is_detected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = _model("edsr_baseline", 3, n_resblocks=2, n_feats=8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "edsr.safetensors"))
    desc = load_pretrained(tmp_path / "edsr.safetensors")
    assert desc.arch == "edsr" and desc.config == model.config


def test_pan_scale_from_argument_or_file_name(tmp_path: Path) -> None:
    model = _model("pan", 3, nf=8, unf=6, nb=1)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="cannot tell the scale"):
        load_pretrained(tmp_path / "weights.pth")
    assert load_pretrained(tmp_path / "weights.pth", scale=3).scale == 3
    torch.save(model.state_dict(), tmp_path / "PANx3_DF2K.pth")
    assert load_pretrained(tmp_path / "PANx3_DF2K.pth").scale == 3


def test_scale_argument_must_match_checkpoint(tmp_path: Path) -> None:
    model = _model("rcan", 2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
    torch.save(model.state_dict(), tmp_path / "rcan.pt")
    with pytest.raises(CheckpointError, match="x2, not x4"):
        load_pretrained(tmp_path / "rcan.pt", scale=4)
    save_pretrained(model, tmp_path / "ours")
    with pytest.raises(CheckpointError, match="x2, not x3"):
        load_pretrained(tmp_path / "ours", scale=3)


def test_unwrap_prefers_ema_and_strips_module_prefix() -> None:
    a, b = torch.zeros(1), torch.ones(1)
    sd = unwrap_state_dict({"params": {"module.w": a}, "params_ema": {"module.module.w": b}})
    assert list(sd) == ["w"] and sd["w"] is b


class _Evil:
    """Pickles to a call of ``open(marker, "w")``: loading must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"params": {"w": torch.zeros(1)}, "payload": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_pretrained(tmp_path / "evil.pth")
    assert not marker.exists()


def test_wrong_keys_are_listed(tmp_path: Path) -> None:
    sd = _model("rcan", 2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2).state_dict()
    sd["body.0.body.1.body.3.bogus"] = sd.pop("body.0.body.1.body.3.conv_du.2.weight")
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "broken.pth")
    msg = str(err.value)
    assert "broken.pth" in msg and "\n" not in msg
    assert "1 missing keys (body.0.body.1.body.3.conv_du.2.weight)" in msg
    assert "1 unexpected keys (body.0.body.1.body.3.bogus)" in msg


def test_shape_mismatch_in_our_format(tmp_path: Path) -> None:
    model = _model("edsr_baseline", 2, n_resblocks=1, n_feats=8)
    path = save_pretrained(model, tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["n_feats"] = 16
    (path / "config.json").write_text(json.dumps(meta))
    expected = r"11 shape mismatches \(e\.g\. body\.0\.body\.0\.bias: checkpoint \(8,\) vs"
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a zip or pickle", "refused or unreadable"),
        (None, "no registered architecture recognises"),
    ],
)
def test_unusable_files(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "thing.pth"
    if content is None:
        torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_pretrained(path)


def test_bad_headers(tmp_path: Path) -> None:
    model = _model("pan", 2, nf=8, unf=6, nb=1)
    path = save_pretrained(model, tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    for change, match in [({"version": 99}, "newer"), ({"arch": "nope"}, "unknown architecture"),
                          ({"config": {**meta["config"], "zzz": 1}}, "unknown key")]:
        (path / "config.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(CheckpointError, match=match):
            load_pretrained(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an attnsr checkpoint directory"):
        load_pretrained(tmp_path / "empty")


def test_missing_names_and_files() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'no_such_model'"):
        load_pretrained("no_such_model")
    with pytest.raises(ModelNotFoundError, match="missing.pth: no such checkpoint"):
        load_pretrained("dir/missing.pth")


def test_preset_name_without_weights_is_refused() -> None:
    """Build and load are different verbs: a preset without weights never reaches
    inference by accident; ``pretrained=False`` is the explicit way to random weights."""
    with pytest.raises(ModelNotFoundError, match=r"pan: no pretrained weights \(models "
                       r"with weights: .*attnsr_lite\.x4"):
        load_pretrained("pan", scale=2)
    desc = load_pretrained("pan", scale=2, pretrained=False)
    assert desc.name == "pan" and desc.scale == 2 and not desc.model.training
    assert load_pretrained("pan", pretrained=False).scale == 4  # no scale: x4
    assert load_pretrained("bicubic", scale=3).scale == 3  # nothing to miss


def test_preset_with_weights_loads_its_tag_for_the_scale() -> None:
    assert load_pretrained("attnsr_lite").name == "attnsr_lite.x4"
    two = load_pretrained("attnsr_lite", scale=2)
    assert two.name == "attnsr_lite.x2" and two.scale == 2
    assert load_pretrained("attnsr-x3").name == "attnsr_lite.x3"  # alias


def test_pretrained_tag_resolves_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnsr.models import registry

    model = _model("imdn", 4, nf=8, num_modules=1)
    save_pretrained(model, tmp_path / "fake-x4", name="whatever")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(registry, "_PRETRAINED", dict(registry._PRETRAINED))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    registry.register_pretrained("imdn", "fake_x4", scale=4, files="fake-x4",
                                 aliases=("fake-x4",), overrides={"nf": 8, "num_modules": 1})
    assert "imdn.fake_x4" in registry.list_models(pretrained=True)
    desc = load_pretrained("fake-x4")
    assert desc.name == "imdn.fake_x4" and desc.config == model.config
    with pytest.raises(ConfigError, match="upscales x4, but x2 was asked"):
        load_pretrained("imdn.fake_x4", scale=2)


def _detectable_presets() -> list[str]:
    from attnsr.models import get_arch, get_preset, list_models

    return [n for n in list_models() if get_arch(get_preset(n).arch).detect is not None]


@pytest.mark.parametrize("name", _detectable_presets())
def test_detectors_are_disjoint_across_the_registry(name: str) -> None:
    """Each architecture's own state dict is claimed by that architecture only, and
    builds a model with exactly its keys and shapes."""
    from attnsr.checkpoint import _expected_shapes
    from attnsr.models import get_arch, get_preset

    entry = get_arch(get_preset(name).arch)
    tiny = dict(entry.tiny)
    torch.manual_seed(0)
    sd = create_model(name, scale=4, **tiny).state_dict()
    if entry.convert is not None:
        pytest.skip(f"{entry.name}: official layout differs from ours (has convert)")
    arch, config, _ = detect_architecture(sd, scale=4)
    assert arch == entry.name
    assert _expected_shapes(arch, config) == {k: tuple(v.shape) for k, v in sd.items()}


def test_average_weights_tool_writes_the_mean_and_refuses_other_configs(tmp_path: Path) -> None:
    """``tools/average_weights.py``: the written weights are the element-wise mean, loadable
    as the same network; checkpoints of another config are refused (exit 2, nothing
    written)."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from attnsr.checkpoint import save_pretrained
    from attnsr.models import create_model

    root = Path(__file__).resolve().parents[1]
    for i in range(2):
        torch.manual_seed(i)
        save_pretrained(create_model("attnsr_lite", scale=2, channels=4, n_blocks=1),
                        tmp_path / f"m{i}", name="attnsr_lite")
    torch.manual_seed(2)
    save_pretrained(create_model("attnsr_lite", scale=2, channels=8, n_blocks=1),
                    tmp_path / "wide", name="attnsr_lite")
    tool = [sys.executable, str(root / "tools" / "average_weights.py")]
    done = subprocess.run([*tool, str(tmp_path / "mean"), str(tmp_path / "m0"),
                           str(tmp_path / "m1")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    a, b = (load_file(tmp_path / f"m{i}" / "model.safetensors") for i in range(2))
    mean = load_file(tmp_path / "mean" / "model.safetensors")
    assert set(mean) == set(a)
    assert all(torch.allclose(mean[k], (a[k] + b[k]) / 2, rtol=0, atol=1e-7) for k in a)
    bad = subprocess.run([*tool, str(tmp_path / "bad"), str(tmp_path / "m0"),
                          str(tmp_path / "wide")], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "one config" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_blend_state_dicts_weights_float_tensors_and_refuses_other_networks() -> None:
    """``blend_state_dicts``: the weighted sum of float tensors (exact at weights 1 and 0),
    integer tensors from the first source; other keys or shapes are refused."""
    from attnsr.checkpoint import blend_state_dicts

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    got = blend_state_dicts([a, b], [0.25, 0.75])
    assert torch.equal(got["w"], torch.tensor([2.5, 5.0])) and int(got["n"]) == 3
    assert torch.equal(blend_state_dicts([a, b], [0.0, 1.0])["w"], b["w"])
    with pytest.raises(ValueError, match="source 1: its tensors differ"):
        blend_state_dicts([a, {"w": torch.zeros(3), "n": torch.tensor(0)}], [0.5, 0.5])
    with pytest.raises(ValueError, match="2 state dicts for 1 weights"):
        blend_state_dicts([a, b], [1.0])
