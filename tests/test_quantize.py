"""int8 quantization (onnxruntime QDQ): output close to fp32, smaller file, metadata,
calibration inputs, and ``attnsr export --int8``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from attnsr.descriptor import describe
from attnsr.errors import ConfigError
from attnsr.export.onnx import export_onnx, onnx_session, read_metadata
from attnsr.export.quantize import (
    QuantizeConfig,
    calibration_inputs,
    first_last_convs,
    quantize_onnx,
)
from attnsr.models.registry import create_model

SCALE = 2


def smooth_image(seed: int, h: int = 64, w: int = 64) -> np.ndarray:
    """A natural-ish float image (H, W, 3) in [0, 1]: upsampled noise plus a gradient."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, h // 8, w // 8), np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic")[0]
    grad = torch.linspace(0, 1, w)[None, None, :].expand(3, h, w)
    img = 0.6 * smooth + 0.3 * grad + 0.05 * torch.rand(3, h, w)
    return img.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("attnsr_lite", scale=SCALE, channels=32, n_blocks=2)
    return export_onnx(describe(model, name="attnsr_lite"),
                       tmp_path_factory.mktemp("q") / "fp32.onnx")


@pytest.fixture(scope="module")
def int8_model(fp32_model: Path) -> Path:
    cal = calibration_inputs([smooth_image(s) for s in range(4)], scale=SCALE, patch=32)
    return quantize_onnx(fp32_model, fp32_model.with_name("int8.onnx"), cal)


def test_int8_output_is_close_to_fp32_and_the_file_smaller(
    fp32_model: Path, int8_model: Path
) -> None:
    lr = smooth_image(99, 40, 48).transpose(2, 0, 1)[None].astype(np.float32)
    ref = onnx_session(fp32_model).run(None, {"lr": lr})[0]
    got = onnx_session(int8_model).run(None, {"lr": lr})[0]
    assert got.shape == ref.shape == (1, 3, 80, 96)
    assert psnr(got, ref) > 35.0
    assert int8_model.stat().st_size < 0.6 * fp32_model.stat().st_size


def test_int8_graph_is_qdq_with_float_first_and_last_conv(
    fp32_model: Path, int8_model: Path
) -> None:
    graph = onnx.load(str(int8_model)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    kept = first_last_convs(fp32_model)
    meta = read_metadata(int8_model)
    assert meta["scale"] == SCALE and meta["quantization"]["float_nodes"] == kept
    assert meta["quantization"]["per_channel"] is True
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    inputs_of = {n.name: n.input for n in graph.node}
    for name in kept:  # their weights stay float initializers, not dequantized int8
        assert inputs_of[name][1] in floats


def test_calibration_inputs_are_downscaled_centre_patches(tmp_path: Path) -> None:
    for i in range(3):
        img = (smooth_image(i, 72, 80) * 255).round().astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    batches = calibration_inputs(tmp_path, scale=SCALE, patch=32, max_images=2)
    assert len(batches) == 2
    assert all(b.shape == (1, 3, 32, 32) and b.dtype == np.float32 for b in batches)
    whole = calibration_inputs(tmp_path, scale=4, patch=64, max_images=1)[0]
    assert whole.shape == (1, 3, 18, 20)  # smaller than the patch: the whole LR image
    assert whole.min() >= 0.0 and whole.max() <= 1.0


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="method"):
        QuantizeConfig(method="magic")
    with pytest.raises(ConfigError, match="no calibration images"):
        calibration_inputs(tmp_path, scale=2)


def test_export_command_int8(tmp_path: Path) -> None:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    for i in range(2):
        img = (smooth_image(i) * 255).round().astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    out = tmp_path / "q.onnx"
    args = ["export", "--model", "attnsr_lite", "--scale", "2", "--random-weights",
            "--set", "channels=16", "--set", "n_blocks=1", "--int8", "--calibration",
            str(tmp_path), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["quantization"]["format"] == "QDQ"
    missing = CliRunner().invoke(app, args[:-4] + ["-o", str(out)])
    assert missing.exit_code == 2 and "--calibration" in missing.output
