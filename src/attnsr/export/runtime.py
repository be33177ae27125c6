"""Run exported ONNX models with onnxruntime behind the usual descriptor interface.

:class:`OnnxDescriptor` is a :class:`~attnsr.descriptor.ModelDescriptor` whose model is
an onnxruntime session, so everything that takes a descriptor (the tiler,
:class:`~attnsr.inference.upscale.Upscaler`, ``attnsr upscale --backend
onnxruntime``, ``attnsr bench``) runs it with the same tiling and image I/O code.
Calling it maps ``lr`` ``(B, C, H, W)`` float in [0, 1] (any size: the graph pads to
the window multiple itself) to ``sr`` ``(B, C', sH, sW)`` float32 in [0, 1] on the CPU.

:func:`onnx_descriptor` accepts an ``.onnx`` file or anything
:func:`attnsr.checkpoint.load_pretrained` accepts; the latter is exported on the fly
(cached under ``~/.cache/attnsr/onnx`` when the weights come from a file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnsr.descriptor import ModelDescriptor
from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.export.onnx import DEFAULT_OPSET, INPUT_NAME, export_onnx, onnx_session, read_metadata
from attnsr.models.base import ModelTraits

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


@dataclass(eq=False)
class OnnxDescriptor(ModelDescriptor):
    """A descriptor backed by an onnxruntime session (CPU). ``path`` is the ``.onnx``
    file it was loaded from. The graph pads/crops itself; ``traits`` are the original
    model's (tiling still aligns tiles to ``multiple_of`` and uses the receptive field).
    ``activation_bytes_per_px``: PyTorch's activation memory per LR pixel measured at
    export (None if unknown), for automatic tile sizes."""

    path: str = ""
    activation_bytes_per_px: float | None = None

    def to(self, device: torch.device | str) -> OnnxDescriptor:
        if torch.device(device).type != "cpu":
            raise ConfigError(f"{self.path}: the onnxruntime backend runs on the CPU only, "
                              f"not {device}")
        return self

    def run(self, lr: Tensor) -> Tensor:
        """``lr`` ``(B, C, H, W)`` -> ``sr`` ``(B, C', sH, sW)`` float32 (not clamped
        here; graphs exported with ``clamp=True`` clamp themselves)."""
        return self.model(lr)

    def __call__(self, lr: Tensor) -> Tensor:
        return self.run(lr).clamp_(0.0, 1.0)


def _probe_scale(session: Any, channels: int) -> int:
    x = np.random.default_rng(0).random((1, channels, _PROBE_SIDE, _PROBE_SIDE), np.float32)
    out = session.run(None, {INPUT_NAME: x})[0]
    return int(out.shape[-1]) // _PROBE_SIDE


def load_onnx(path: str | Path, *, threads: int | None = None) -> OnnxDescriptor:
    """Load an ``.onnx`` file (ours, with ``attnsr`` metadata, or any single-input
    ``(B, C, H, W) -> (B, C, sH, sW)`` graph whose input is named ``lr``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such ONNX file")
    meta = read_metadata(path)
    session = onnx_session(path, threads=threads)
    in_ch = int(meta.get("in_channels", 3))
    scale = int(meta["scale"]) if "scale" in meta else _probe_scale(session, in_ch)
    traits = ModelTraits(**meta["traits"]) if "traits" in meta else ModelTraits()
    return OnnxDescriptor(
        model=OnnxModule(session), name=str(meta.get("name", path.stem)),
        arch=str(meta.get("arch", "onnx")), scale=scale, in_channels=in_ch,
        out_channels=int(meta.get("out_channels", in_ch)), traits=traits,
        config=meta.get("config"), source=str(meta.get("source", path)), path=str(path),
        activation_bytes_per_px=meta.get("activation_bytes_per_px"),
    )


def cache_dir() -> Path:
    """Where on-the-fly exports of file-backed weights are kept (``$ATTNSR_CACHE/onnx``,
    default ``~/.cache/attnsr/onnx``)."""
    root = os.environ.get("ATTNSR_CACHE") or Path.home() / ".cache" / "attnsr"
    return Path(root) / "onnx"


def fingerprint(desc: ModelDescriptor, opset: int) -> str:
    """Short hash of the weights, the config, the opset and the torch version."""
    h = hashlib.sha256(f"{desc.arch}|{desc.config}|{opset}|{torch.__version__}".encode())
    for key, value in desc.model.state_dict().items():
        h.update(f"{key}|{value.dtype}".encode())
        h.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def onnx_descriptor(
    model: str | Path | ModelDescriptor, *, scale: int | None = None,
    opset: int = DEFAULT_OPSET, threads: int | None = None,
) -> OnnxDescriptor:
    """An :class:`OnnxDescriptor` for an ``.onnx`` path, a descriptor, or a name/path
    that :func:`attnsr.checkpoint.load_pretrained` understands (exported on the fly;
    file-backed weights are cached by :func:`fingerprint`, random ones are not)."""
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        desc = load_onnx(model, threads=threads)
        if scale is not None and desc.scale != scale:
            raise ConfigError(f"{model}: upscales x{desc.scale}, but x{scale} was asked")
        return desc
    if not isinstance(model, ModelDescriptor):
        from attnsr.checkpoint import load_pretrained

        model = load_pretrained(model, scale=scale)
    if model.source and Path(model.source).exists():
        target = cache_dir() / f"{model.name.replace(os.sep, '_')}-{fingerprint(model, opset)}.onnx"
        if not target.is_file():
            _export_atomic(model, target, opset)
        return load_onnx(target, threads=threads)
    with tempfile.TemporaryDirectory(prefix="attnsr-onnx-") as tmp:
        # onnxruntime reads the whole file at session creation; it may go afterwards
        return load_onnx(export_onnx(model, Path(tmp) / "model.onnx", opset=opset),
                         threads=threads)


def runtime_model(model: str | None, scale: int | None) -> OnnxDescriptor:
    """What ``attnsr upscale --backend onnxruntime --model MODEL`` runs: an ``.onnx``
    file, or any model the torch backend accepts (None: the bundled default), exported."""
    if model is not None and str(model).endswith(".onnx"):
        return onnx_descriptor(model, scale=scale)
    from attnsr.inference.upscale import resolve_model

    return onnx_descriptor(resolve_model(model, scale))


def _export_atomic(desc: ModelDescriptor, target: Path, opset: int) -> None:
    from attnsr.data.io import atomic_write

    with atomic_write(target) as tmp:
        export_onnx(desc, tmp, opset=opset)
