"""One path from a model name to pixels: every entry point goes through
:func:`attnsr.resolver.resolve`, which applies the bundled-default rule, refuses presets
without weights, and decides device, precision and backend; the registry holds the
weights as tags of presets; configs are checked by the one typed loader."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnsr
from attnsr import resolver
from attnsr.checkpoint import save_pretrained
from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.models import registry
from attnsr.models.registry import create_model, get_arch, get_preset, list_models

SRC = Path(attnsr.__file__).resolve().parent


def _app() -> Any:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    return app


def _image(path: Path, h: int = 12, w: int = 16) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every call of ``resolver.resolve`` (and still resolve)."""
    calls: list[Any] = []
    real = resolver.resolve

    def recording(model: Any = None, **kwargs: Any) -> Any:
        calls.append(model)
        return real(model, **kwargs)

    monkeypatch.setattr(resolver, "resolve", recording)
    return calls


# --------------------------------------------------------------------------- one path
def test_every_cli_command_resolves_through_the_resolver(tmp_path: Path, spy: list[Any]
                                                         ) -> None:
    app, run = _app(), CliRunner()
    img = _image(tmp_path / "a.png", 24, 24)
    bench_root = tmp_path / "Set"
    (bench_root / "HR").mkdir(parents=True)
    _image(bench_root / "HR" / "b.png", 48, 48)
    commands = {
        "upscale": ["upscale", str(img), "-m", "bicubic", "-s", "2", "-o", str(tmp_path / "o.png"),
                    "--no-progress"],
        "eval": ["eval", "-m", "bicubic", "-d", str(bench_root), "-s", "2", "--no-progress"],
        "explain": ["explain", str(img), "-m", "attnsr_lite", "--random-weights", "-s", "2",
                    "--lam-steps", "0", "-o", str(tmp_path / "explain")],
        "export": ["export", "-m", "bicubic", "-s", "2", "-o", str(tmp_path / "b.onnx")],
        "bench": ["bench", "-m", "bicubic", "--in-process", "--runs", "1", "--warmup", "0",
                  "--size", "8x8", "-s", "2"],
    }
    for name, args in commands.items():
        before = len(spy)
        result = run.invoke(app, args)
        assert result.exit_code == 0, (name, result.output)
        assert len(spy) > before, f"attnsr {name} bypassed resolver.resolve"


def test_python_api_resolves_through_the_resolver(spy: list[Any]) -> None:
    lr = np.zeros((6, 6, 3), np.uint8)
    attnsr.upscale(lr, model="bicubic", scale=2)
    attnsr.load_pretrained("bicubic", scale=2)
    attnsr.resolve("attnsr-x2")
    assert spy[:3] == ["bicubic", "bicubic", "attnsr-x2"]


def test_training_init_from_resolves_through_the_resolver(spy: list[Any]) -> None:
    from attnsr.train.loop import init_matching

    model = create_model("attnsr_lite", scale=2)
    init_matching(model, "attnsr-x2")
    assert spy == ["attnsr-x2"]
    ref = attnsr.load_pretrained("attnsr-x2").model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def _calls_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, (ast.Attribute, ast.Name))}


def test_no_entry_point_loads_weights_itself() -> None:
    """Commands and engines never call the file loaders or build models for inference on
    their own: only the resolver turns names and files into runners."""
    loaders = {"load_checkpoint", "load_onnx", "onnx_runner"}
    entry_points = [*(SRC / "cli").glob("*_cmd.py"), SRC / "inference" / "upscale.py",
                    SRC / "evaluate.py", SRC / "explain" / "report.py"]
    for path in entry_points:
        assert not (_calls_in(path) & loaders), path


# --------------------------------------------------------------------------- defaults
def test_default_model_prefers_real_world_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    real = [w for w in registry.list_pretrained() if w.degradation == "real"]
    for w in real:
        assert resolver.default_model(w.scale) == w.name
    monkeypatch.setattr(registry, "_PRETRAINED", {k: v for k, v in registry._PRETRAINED.items()
                                                  if v.degradation == "bicubic"})
    assert resolver.default_model(4) == "attnsr_lite.x4"
    assert resolver.default_model() == "attnsr_lite.x4"
    assert resolver.default_model(3) == "attnsr_lite.x3"
    with pytest.raises(ModelNotFoundError, match="no bundled model for x8"):
        resolver.default_model(8)


def test_list_models_pretrained_is_exactly_what_has_weights() -> None:
    names = list_models(pretrained=True)
    assert {"attnsr_lite.x2", "attnsr_lite.x3", "attnsr_lite.x4"} <= set(names)
    for name in names:
        tag = registry.get_pretrained(name)
        assert tag is not None and tag.available
        assert resolver.resolve(name).name == name


def test_cli_refuses_a_model_without_weights(tmp_path: Path) -> None:
    app, run = _app(), CliRunner()
    img = _image(tmp_path / "a.png")
    bench_root = tmp_path / "Set"
    (bench_root / "HR").mkdir(parents=True)
    _image(bench_root / "HR" / "b.png", 48, 48)
    for args in (["upscale", str(img), "-m", "rcan_small", "--no-progress"],
                 ["eval", "-m", "rcan_small", "-d", str(bench_root), "-s", "2"],
                 ["explain", str(img), "-m", "rcan_small", "-o", str(tmp_path / "e")]):
        result = run.invoke(app, args)
        assert result.exit_code == 2, result.output
        line = " ".join(result.output.split())
        assert "rcan_small: no pretrained weights" in line
        assert "attnsr_lite.x4" in line  # lists what has weights
        assert "Traceback" not in result.output
    assert not list(tmp_path.glob("a_x*"))


def test_explain_has_the_same_default_model_as_upscale(tmp_path: Path,
                                                       spy: list[Any]) -> None:
    result = CliRunner().invoke(_app(), ["explain", str(_image(tmp_path / "a.png", 20, 20)),
                                         "-s", "2", "--lam-steps", "0", "-o",
                                         str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert spy[0] is None  # no --model: the resolver's default rule, as upscale
    assert (tmp_path / "e" / "explain.json").is_file()


# --------------------------------------------------------------------------- devices
def test_cuda_on_a_cpu_only_build_is_a_one_line_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="--device cuda: .*use --device cpu or auto"):
        resolver.resolve_device("cuda")
    result = CliRunner().invoke(_app(), ["upscale", str(_image(tmp_path / "a.png")),
                                         "--device", "cuda", "--no-progress"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "--device cuda" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_backend_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--backend 'tensorrt'"):
        resolver.resolve("bicubic", scale=2, backend="tensorrt")
    with pytest.raises(ConfigError, match="runs with --backend onnxruntime"):
        resolver.resolve(tmp_path / "m.onnx", backend="torch")


# --------------------------------------------------------------------------- denoise
@pytest.fixture
def fake_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A clean and a real-world tag of one tiny preset, files in ``tmp_path``."""
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(registry, "_PRETRAINED", dict(registry._PRETRAINED))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    tiny = {"channels": 8, "n_blocks": 1}
    models = []
    for seed, (tag, kind) in enumerate((("tiny_x2", "bicubic"), ("tiny_real_x2", "real"))):
        torch.manual_seed(seed)
        models.append(create_model("attnsr_base", scale=2, **tiny))
        save_pretrained(models[-1], tmp_path / tag)
        registry.register_pretrained("attnsr_base", tag, scale=2, files=tag, overrides=tiny,
                                     degradation=kind)
    return models[0], models[1]


def test_denoise_interpolates_clean_and_real_weights(fake_pair: tuple[Any, Any]) -> None:
    clean, real = (m.state_dict() for m in fake_pair)
    for strength in (0.0, 0.3, 1.0):
        got = resolver.resolve("attnsr_base.tiny_real_x2", denoise=strength).model.state_dict()
        for k, v in got.items():
            torch.testing.assert_close(v, torch.lerp(clean[k], real[k], strength))
    from_clean_name = resolver.resolve("attnsr_base.tiny_x2", denoise=1.0).model.state_dict()
    assert all(torch.equal(v, real[k]) for k, v in from_clean_name.items())
    with pytest.raises(ConfigError, match=r"--denoise 1.5: use a strength in \[0, 1\]"):
        resolver.resolve("attnsr_base.tiny_x2", denoise=1.5)
    with pytest.raises(ConfigError, match="needs a bundled model with a clean and a real"):
        resolver.resolve("bicubic", scale=2, denoise=0.5)


# --------------------------------------------------------------------------- configs
def test_architecture_configs_use_the_strict_typed_loader() -> None:
    with pytest.raises(ConfigError, match="attnsr_lite.attention: expected bool, got str 'no'"):
        create_model("attnsr_lite", attention="no")
    with pytest.raises(ConfigError, match="attnsr_lite.channels: expected int, got float"):
        create_model("attnsr_lite", channels=40.0)
    with pytest.raises(ConfigError, match="attnsr_lite.chanels: unknown key"):
        create_model("attnsr_lite", chanels=40)
    assert create_model("swinir_light", depths=[2, 2], num_heads=[2, 2]).config.depths == (2, 2)


@pytest.mark.parametrize("name", list_models())
def test_every_preset_is_documented_and_has_a_tiny_test_config(name: str) -> None:
    preset = get_preset(name)
    assert len(preset.description) > 10
    tiny = get_arch(preset.arch).tiny
    with torch.device("meta"):
        model = create_model(name, scale=2, **tiny)
    assert sum(p.numel() for p in model.parameters()) < 300_000, "tiny is not tiny"


def test_presets_and_tags_are_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_preset("pan", "pan", description="again")
    with pytest.raises(ValueError, match="needs a description"):
        registry.register_preset("pan_undocumented", "pan")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_pretrained("attnsr_lite", "x4", scale=4, files="attnsr-x4")


def test_models_command_lists_what_has_weights() -> None:
    result = CliRunner().invoke(_app(), ["models", "--pretrained", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["pretrained"]
    assert [r["name"] for r in rows] == [w.name for w in registry.list_pretrained()]
    x4 = next(r for r in rows if r["name"] == "attnsr_lite.x4")
    assert x4["aliases"] == ["attnsr-x4"] and x4["overrides"] == {"n_blocks": 8}
    assert x4["inputs"] == "bicubic" and x4["set5_psnr"] > 31
