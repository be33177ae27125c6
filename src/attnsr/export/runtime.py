"""Run exported ONNX models with onnxruntime behind the one runner contract.

:func:`load_onnx` gives a :class:`~attnsr.runner.Runner` with ``backend="onnxruntime"``
whose model is the session wrapped as a parameter-free module (:class:`OnnxModule`), so
the runner pads, crops and clamps exactly as for torch, and everything that takes a
runner (the tiler, :class:`~attnsr.inference.upscale.Upscaler`, ``attnsr upscale
--backend onnxruntime``, ``attnsr bench``) runs it with the same code.

:func:`onnx_runner` accepts an ``.onnx`` file or a torch runner, which is exported on the
fly (cached under ``~/.cache/attnsr/onnx`` when the weights come from a file). Names are
resolved by :func:`attnsr.resolver.resolve` (``backend="onnxruntime"``), not here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.export.onnx import DEFAULT_OPSET, INPUT_NAME, export_onnx, onnx_session, read_metadata
from attnsr.fs import atomic_write
from attnsr.models.base import ModelTraits
from attnsr.runner import Runner

log = logging.getLogger(__name__)

_PROBE_SIDE = 16  # input side used to find the scale of a foreign .onnx file


class OnnxModule(nn.Module):
    """An onnxruntime session as a parameter-free module: ``(B, C, H, W)`` -> ``sr``
    float32 on the CPU (inputs are moved to CPU float32 first)."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session

    def forward(self, lr: Tensor) -> Tensor:
        x = np.ascontiguousarray(lr.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {INPUT_NAME: x})[0])


def _probe_scale(session: Any, channels: int) -> int:
    x = np.random.default_rng(0).random((1, channels, _PROBE_SIDE, _PROBE_SIDE), np.float32)
    out = session.run(None, {INPUT_NAME: x})[0]
    return int(out.shape[-1]) // _PROBE_SIDE


def load_onnx(path: str | Path, *, threads: int | None = None) -> Runner:
    """Load an ``.onnx`` file (ours, with ``attnsr`` metadata, or any single-input
    ``(B, C, H, W) -> (B, C, sH, sW)`` graph whose input is named ``lr``) as an
    onnxruntime :class:`~attnsr.runner.Runner` (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such ONNX file")
    meta = read_metadata(path)
    session = onnx_session(path, threads=threads)
    in_ch = int(meta.get("in_channels", 3))
    scale = int(meta["scale"]) if "scale" in meta else _probe_scale(session, in_ch)
    traits = ModelTraits(**meta["traits"]) if "traits" in meta else ModelTraits()
    return Runner(
        model=OnnxModule(session), name=str(meta.get("name", path.stem)),
        arch=str(meta.get("arch", "onnx")), scale=scale, in_channels=in_ch,
        out_channels=int(meta.get("out_channels", in_ch)), traits=traits,
        config=meta.get("config"), source=str(path), backend="onnxruntime",
        activation_bytes_per_px=meta.get("activation_bytes_per_px"),
    )


def cache_dir() -> Path:
    """Where on-the-fly exports of file-backed weights are kept (``$ATTNSR_CACHE/onnx``,
    default ``~/.cache/attnsr/onnx``)."""
    root = os.environ.get("ATTNSR_CACHE") or Path.home() / ".cache" / "attnsr"
    return Path(root) / "onnx"


def versions() -> str:
    """The versions an exported graph depends on: torch (the exporter), onnx,
    onnxruntime (its optimiser) and attnsr (the export wrapper)."""
    import onnx
    import onnxruntime

    from attnsr import __version__

    return f"torch {torch.__version__}|onnx {onnx.__version__}|ort {onnxruntime.__version__}" \
        f"|attnsr {__version__}"


def fingerprint(desc: Runner, opset: int) -> str:
    """Short hash of the weights, the config, the opset and :func:`versions`."""
    h = hashlib.sha256(f"{desc.arch}|{desc.config}|{opset}|{versions()}".encode())
    for key, value in desc.model.state_dict().items():
        h.update(f"{key}|{value.dtype}".encode())
        h.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def onnx_runner(
    model: str | Path | Runner, *, scale: int | None = None,
    opset: int = DEFAULT_OPSET, threads: int | None = None,
) -> Runner:
    """An onnxruntime :class:`~attnsr.runner.Runner` for an ``.onnx`` path or a torch
    runner (exported on the fly; file-backed weights are cached by :func:`fingerprint`,
    random ones are not)."""
    if not isinstance(model, Runner):
        runner = load_onnx(model, threads=threads)
        if scale is not None and runner.scale != scale:
            raise ConfigError(f"{model}: upscales x{runner.scale}, but x{scale} was asked")
        return runner
    if model.backend != "torch":
        return model
    if model.source and Path(model.source).exists():
        name = model.name.replace(os.sep, "_")
        target = cache_dir() / f"{name}-{fingerprint(model, opset)}.onnx"
        if not target.is_file():
            _export_atomic(model, target, opset)
        return _named(load_onnx(target, threads=threads), model)
    with tempfile.TemporaryDirectory(prefix="attnsr-onnx-") as tmp:
        # onnxruntime reads the whole file at session creation; it may go afterwards
        path = export_onnx(model, Path(tmp) / "model.onnx", opset=opset)
        return _named(load_onnx(path, threads=threads), model)


def _named(runner: Runner, source: Runner) -> Runner:
    """The exported runner under the torch runner's name and source."""
    runner.name, runner.source = source.name, source.source
    return runner


def _export_atomic(desc: Runner, target: Path, opset: int) -> None:
    with atomic_write(target) as tmp:
        export_onnx(desc, tmp, opset=opset)
