"""Training config: loading, type/unknown-key errors naming the key path, overrides,
and data/model problems reported before training starts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from attnsr.errors import ConfigError
from attnsr.train.config import (
    TrainConfig,
    apply_override,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from attnsr.train.loop import Trainer
from train_fixtures import make_images, one_thread, tiny_config, tiny_values  # noqa: F401

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_yaml_and_toml_load_the_same(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "scale: 3\nmodel: {name: pan}\noptim: {lr: 1.0e-3, betas: [0.8, 0.9]}\n"
        "data: {sources: [{hr_dir: x, weight: 2}]}\n")
    (tmp_path / "a.toml").write_text(
        'scale = 3\n[model]\nname = "pan"\n[optim]\nlr = 1e-3\nbetas = [0.8, 0.9]\n'
        '[[data.sources]]\nhr_dir = "x"\nweight = 2\n')
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.toml")
    assert a == b
    assert a.optim.betas == (0.8, 0.9) and a.data.sources[0].weight == 2.0
    assert a.total_iters == TrainConfig().total_iters  # defaults fill the rest


@pytest.mark.parametrize(("values", "message"), [
    ({"optim": {"lr": "abc"}}, "optim.lr: expected float, got str 'abc'"),
    ({"optim": {"lrr": 1.0}}, "optim.lrr: unknown key"),
    ({"batch_size": 2.5}, "batch_size: expected int, got float 2.5"),
    ({"batch_size": True}, "batch_size: expected int, got bool True"),
    ({"loss": {"name": "l3"}}, "loss.name: expected one of ['l1', 'mse', 'charbonnier']"),
    ({"optim": {"betas": [0.9]}}, "optim.betas: expected 2 values, got 1"),
    ({"data": {"sources": [{"hr_dir": 3}]}}, "data.sources[0].hr_dir: expected str, got int 3"),
    ({"data": {"sources": [{"weight": 1.0}]}}, "data.sources[0]"),
    ({"runtime": 5}, "runtime: expected a mapping, got int 5"),
])
def test_bad_values_name_the_key(values: dict, message: str) -> None:
    base = {"model": {"name": "pan"}, "data": {"sources": [{"hr_dir": "x"}]}}
    for key, value in values.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as err:
        load_config(base=base)
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "message"), [
    ({"scale": 0}, "scale: must be positive"),
    ({"ema": {"decay": 1.0}}, "ema.decay"),
    ({"schedule": {"milestones": [5, 2]}}, "schedule.milestones"),
    ({"model": {"name": ""}}, "model: set model.name"),
    ({"data": {"sources": []}}, "data.sources: at least one"),
])
def test_bad_ranges(values: dict, message: str) -> None:
    base = {"model": {"name": "pan"}, "data": {"sources": [{"hr_dir": "x"}]}, **values}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(base=base)


def test_dotted_overrides_are_parsed_safely() -> None:
    data: dict = {"data": {"sources": [{"hr_dir": "a"}]}}
    apply_override(data, "optim.lr=2e-4")
    apply_override(data, "data.sources.0.weight=3")
    apply_override(data, "val.sets=[Set5, Set14]")
    apply_override(data, "model.name=__import__('os').system('x')")  # stays a string
    assert data["optim"]["lr"] == 2e-4
    assert data["data"]["sources"][0]["weight"] == 3
    assert data["val"]["sets"] == ["Set5", "Set14"]
    assert data["model"]["name"] == "__import__('os').system('x')"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override(data, "optim.lr")
    with pytest.raises(ConfigError, match="not an index"):
        apply_override(data, "data.sources.4.weight=1")


def test_override_type_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match="optim.lr: expected float, got str 'fast'"):
        load_config(base={"model": {"name": "pan"}, "data": {"sources": [{"hr_dir": "x"}]}},
                    overrides=["optim.lr=fast"])


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert from_dict(TrainConfig, to_dict(config)) == config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    match = re.search(r"_x(\d)(_|$)", path.stem)  # name_x4.yaml, name_x4_anneal.yaml
    assert match and config.scale == int(match.group(1))
    assert "scale" not in config.model.overrides  # the scale lives in one place


# ---------------------------------------------------------------- errors before training


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "run").exists()


def test_missing_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data={"sources": [{"hr_dir": str(tmp_path / "nope")}]})
    with pytest.raises(ConfigError, match=r"data.sources\[0\].hr_dir: folder not found"):
        Trainer(cfg, progress=False)
    _assert_nothing_written(tmp_path)


def test_missing_validation_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, val={"every": 2, "sets": [str(tmp_path / "Set5")]})
    with pytest.raises(ConfigError, match=r"val.sets\[0\]: folder not found"):
        Trainer(cfg, progress=False)


def test_image_smaller_than_patch(tmp_path: Path) -> None:
    make_images(tmp_path / "train")
    small = make_images(tmp_path / "train", n=1, size=(12, 40), seed=3, suffix="_small")[0]
    cfg = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=f"{small}: image 40x12 is smaller than the HR "
                                          "patch 16x16"):
        Trainer(cfg, progress=False)
    _assert_nothing_written(tmp_path)
    # skip_small leaves it out instead
    trainer = Trainer(tiny_config(tmp_path, data={"skip_small": True}), progress=False)
    assert len(trainer.dataset.sources[0]) == 4


def test_paired_lr_size_mismatch(tmp_path: Path) -> None:
    make_images(tmp_path / "hr", n=2)
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(lr_dir / "img0x2.png")
    Image.fromarray(np.zeros((15, 16, 3), np.uint8)).save(lr_dir / "img1x2.png")
    src = {"hr_dir": str(tmp_path / "hr"), "lr_dir": str(lr_dir)}
    with pytest.raises(ConfigError, match=r"img1x2.png: LR size 16x15 times scale 2 is not "
                                          r"the HR size 32x32"):
        Trainer(tiny_config(tmp_path, data={"sources": [src]}), progress=False)
    (lr_dir / "img1x2.png").unlink()
    with pytest.raises(ConfigError, match=r"img1.png: no LR image named img1x2"):
        Trainer(tiny_config(tmp_path, data={"sources": [src]}), progress=False)


def test_model_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.overrides.scale"):
        Trainer(tiny_config(tmp_path, model={"overrides": {"scale": 4}}), progress=False)
    with pytest.raises(ConfigError, match="model.name: unknown model .nonet."):
        Trainer(tiny_config(tmp_path, model={"name": "nonet"}), progress=False)
    with pytest.raises(ConfigError, match="batch_size: 4 must split evenly"):
        Trainer(tiny_config(tmp_path, runtime={"grad_accum": 3}), progress=False)


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    values = tiny_values(tmp_path)
    values["optim"]["lr"] = "abc"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(values))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "bad.yaml"), "--no-progress"])
    assert result.exit_code == 2
    assert "optim.lr: expected float, got str 'abc'" in result.output
