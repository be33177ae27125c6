"""``--fast``: the int8 graphs that ship with the bundled weights.

Users have no training images to calibrate with, so the int8 (QDQ, per-channel int8
weights, uint8 activations) graph of each bundled model is built once, at release time,
by ``tools/ship_int8.py`` (calibrated on training images: General100, downscaled by the
scale) and shipped beside its weights as ``model.int8.onnx``. Its ``attnsr`` metadata
records the SHA-256 of the ``model.safetensors`` it was made from; a graph whose weights
changed since is refused (rebuild it with the tool) rather than run silently stale.

>>> runner = attnsr.resolve("attnsr-x4", fast=True)   # onnxruntime, int8
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.models import registry
from attnsr.runner import Runner

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "model.safetensors"


def weights_digest(directory: str | Path) -> str:
    """SHA-256 (hex) of the ``model.safetensors`` in ``directory``."""
    h = hashlib.sha256()
    with open(Path(directory) / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require_onnxruntime(what: str = "--fast") -> None:
    """One-line :class:`ConfigError` when onnxruntime is not installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} runs int8 graphs with onnxruntime, which is not "
                          "installed: pip install 'attnsr[onnx]'") from None


def fast_tag(model: Any, scale: int | None) -> registry.PretrainedTag:
    """The bundled weights ``model`` names (None: the default for ``scale``), or a
    one-line :class:`ConfigError` for anything else (a checkpoint, a random preset)."""
    from attnsr.resolver import default_model

    name = default_model(scale) if model is None else model
    tag = registry.get_pretrained(str(name)) if isinstance(name, (str, Path)) else None
    if tag is None and isinstance(name, str) and name in registry.list_models():
        tags = registry.pretrained_of(name, scale)
        tag = tags[0] if tags else None
    if tag is None:
        shipped = ", ".join(t.name for t in registry.list_pretrained()
                            if (t.directory / INT8_FILE).is_file()) or "none"
        raise ConfigError(f"--fast: int8 graphs ship for the bundled models only ({shipped}), "
                          f"not {name!r}; for your own weights run `attnsr export --int8 "
                          "--calibration DIR` and pass the .onnx file")
    if scale is not None and tag.scale != scale:
        raise ConfigError(f"{tag.name} upscales x{tag.scale}, but x{scale} was asked")
    return tag


def fast_runner(model: Any = None, *, scale: int | None = None,
                threads: int | None = None) -> Runner:
    """The int8 onnxruntime :class:`Runner` shipped for the bundled weights ``model``
    (None: the bundled default for ``scale``)."""
    from attnsr.export.onnx import read_metadata
    from attnsr.export.runtime import load_onnx

    require_onnxruntime()
    tag = fast_tag(model, scale)
    path = tag.directory / INT8_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"--fast: {tag.name} has no int8 graph ({path}); build it "
                                 "with tools/ship_int8.py")
    made_from = read_metadata(path).get("weights_sha256")
    if made_from != weights_digest(tag.directory):
        raise ConfigError(f"--fast: {path} was built from other weights than "
                          f"{tag.name}'s; rebuild it with tools/ship_int8.py")
    runner = load_onnx(path, threads=threads)
    runner.name, runner.source = f"{tag.name}@int8", str(path)
    return runner


def build_int8(
    tag: registry.PretrainedTag, calibration: Sequence[np.ndarray], *,
    method: str = "percentile", keep_first_last: bool = False, out: Path | None = None,
) -> Path:
    """Quantize ``tag``'s weights with ``calibration`` LR inputs ``(1, 3, p, p)`` and
    write the graph to ``out`` (default: beside the weights, :data:`INT8_FILE`), with the
    weights' digest in its metadata."""
    from attnsr.export.onnx import export_onnx, read_metadata
    from attnsr.export.quantize import QuantizeConfig, _set_metadata, quantize_onnx
    from attnsr.fs import atomic_write
    from attnsr.resolver import load_pretrained

    desc = load_pretrained(tag.name)
    cfg = QuantizeConfig(method=method, keep_first_last=keep_first_last)
    target = out or tag.directory / INT8_FILE
    with tempfile.TemporaryDirectory(prefix="attnsr-int8-") as tmp:
        fp32 = export_onnx(desc, Path(tmp) / "fp32.onnx")
        int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx", calibration, cfg)
        _set_metadata(int8, {**read_metadata(int8), "name": tag.name,
                             "weights_sha256": weights_digest(tag.directory)})
        with atomic_write(target) as staged:
            Path(staged).write_bytes(int8.read_bytes())
    log.info("%s: int8 graph written to %s", tag.name, target)
    return target
