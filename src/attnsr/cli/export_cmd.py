"""``attnsr export``: write a model as ONNX (optionally int8) or TorchScript."""

from __future__ import annotations

import tempfile
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from attnsr.cli.app import app, console, handle_errors, setup_logging
from attnsr.errors import ConfigError


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


def model_runner(model: str, scale: Optional[int], overrides: list[str],
                 random_weights: bool) -> Any:
    """The runner of ``model`` (:func:`attnsr.resolver.resolve`); ``overrides``
    (``key=value``, needs ``random_weights``) build a preset with those config values."""
    from attnsr import resolver
    from attnsr.models.registry import create_model, get_preset
    from attnsr.train.config import apply_override

    if not overrides:
        return resolver.resolve(model, scale=scale, backend="torch",
                                pretrained=not random_weights)
    if not random_weights:
        raise ConfigError("--set builds a registered model with random weights: add "
                          "--random-weights")
    get_preset(model)  # unknown names fail here with the list of models
    values: dict[str, Any] = {}
    for assignment in overrides:
        apply_override(values, assignment)
    return resolver.resolve(create_model(model, scale=scale or 4, **values), backend="torch")


def _default_output(desc: Any, fmt: ExportFormat, int8: bool) -> Path:
    suffix = ".onnx" if fmt is ExportFormat.onnx else ".pt"
    return Path(f"{desc.name}-x{desc.scale}{'-int8' if int8 else ''}{suffix}")


def _export_int8(desc: Any, out: Path, calibration: Path, opset: int,
                 static: Optional[tuple[int, int]]) -> None:
    from attnsr.export.onnx import export_onnx
    from attnsr.export.quantize import calibration_inputs, quantize_onnx

    inputs = calibration_inputs(calibration, scale=desc.scale)
    with tempfile.TemporaryDirectory(prefix="attnsr-export-") as tmp:
        fp32 = export_onnx(desc, Path(tmp) / "fp32.onnx", opset=opset, static_size=static)
        quantize_onnx(fp32, out, inputs)


@app.command("export")
@handle_errors
def export_command(
    model: str = typer.Option(..., "--model", "-m",
                              help="Registered model, bundled weights name or checkpoint."),
    scale: Optional[int] = typer.Option(None, "--scale", "-s", help="Upscaling factor."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format", "-f", help="Output format."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    dynamic: bool = typer.Option(True, "--dynamic", help="Dynamic batch, height and width "
                                 "(the default)."),
    static: Optional[tuple[int, int]] = typer.Option(
        None, "--static", help="Fix the input size: --static H W (default: dynamic "
        "batch, height and width)."),
    int8: bool = typer.Option(False, "--int8", help="int8 static quantization (ONNX only)."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Folder of images for --int8 calibration (downscaled "
        "by the scale to make LR inputs)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="Config override for a registered model (with "
        "--random-weights): --set channels=32 (repeatable)."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Allow a registered model without pretrained "
        "weights (random initialisation, for architecture work)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Export a model; the ONNX/TorchScript file runs at any input size and is checked
    against PyTorch before it is written."""
    setup_logging(verbose)
    del dynamic  # the default; --static turns it off
    if int8 and (fmt is not ExportFormat.onnx or calibration is None):
        raise ConfigError("--int8 needs --format onnx and --calibration DIR")
    desc = model_runner(model, scale, list(set_ or []), random_weights)
    out = output or _default_output(desc, fmt, int8)
    if int8:
        assert calibration is not None
        _export_int8(desc, out, calibration, opset, static)
    elif fmt is ExportFormat.onnx:
        from attnsr.export.onnx import export_onnx

        export_onnx(desc, out, opset=opset, static_size=static)
    else:
        from attnsr.export.torchscript import export_torchscript

        export_torchscript(desc, out, static_size=static)
    size_mb = out.stat().st_size / 2**20
    shape = f"{static[0]}x{static[1]}" if static else "any size"
    console.print(f"wrote {out} ({size_mb:.2f} MiB): {desc.name} x{desc.scale}, "
                  f"{'int8 ' if int8 else ''}{fmt.value}, input "
                  f"{shape}; "
                  f"{'float graph ' if int8 else ''}verified against PyTorch")
