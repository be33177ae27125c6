"""int8 post-training static quantization of exported ONNX models (onnxruntime).

Why onnxruntime and not ``torch.ao`` FX: on this project's AMD EPYC CPU (AVX-512 VNNI,
1 thread) ``attnsr_lite`` x4 at 128x128 took 0.41 s in eager PyTorch fp32, 0.13 s as FX
x86 int8, 0.32 s in onnxruntime fp32 and 0.12 s in onnxruntime int8: the int8 paths are
on par, and onnxruntime needs no PyTorch at deployment (``docs/deployment.md``).

Format: QDQ (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer
kernels), weights int8 per output channel, activations uint8 per tensor with ranges
calibrated on a few LR patches (:func:`calibration_inputs`: images downscaled by the
model's scale with MATLAB bicubic, as LR inputs are made). Nodes named in
``exclude_nodes`` (and, by default, the first and last convolutions, which the SR
quantization literature finds the most sensitive) stay in float.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnsr.data.resize import imresize
from attnsr.errors import ConfigError, ExportError
from attnsr.export.onnx import INPUT_NAME, METADATA_KEY, read_metadata

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    """Settings of :func:`quantize_onnx`.

    Attributes:
        per_channel: int8 weights per output channel (else per tensor).
        method: activation range calibration: ``minmax``, ``percentile`` or ``entropy``.
        keep_first_last: leave the first and the last Conv in float.
        exclude_nodes: further node names left in float.
        patch: side of the LR calibration patches.
        max_images: calibration images used at most.
    """

    per_channel: bool = True
    method: str = "minmax"
    keep_first_last: bool = True
    exclude_nodes: tuple[str, ...] = ()
    patch: int = 96
    max_images: int = 16

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration method {self.method!r}: use one of "
                              f"{', '.join(CALIBRATION_METHODS)}")
        if self.patch < 8 or self.max_images < 1:
            raise ConfigError("calibration patch must be >= 8 and max_images >= 1")


def _center_patch(img: np.ndarray, patch: int) -> np.ndarray:
    """The central ``patch x patch`` crop of ``(H, W, C)`` (the whole image if smaller)."""
    h, w = img.shape[:2]
    y, x = max((h - patch) // 2, 0), max((w - patch) // 2, 0)
    return img[y : y + patch, x : x + patch]


def calibration_inputs(
    images: Sequence[np.ndarray] | str | Path, *, scale: int, patch: int = 96,
    max_images: int = 16, downscale: bool = True,
) -> list[np.ndarray]:
    """LR calibration batches ``(1, 3, p, p)`` float32 in [0, 1].

    ``images``: a folder of image files or float ``(H, W, 3)`` arrays in [0, 1]. With
    ``downscale`` each is first reduced by ``scale`` (MATLAB bicubic), so the
    calibration sees the statistics of real LR inputs; then the central patch is taken.
    """
    if isinstance(images, (str, Path)):
        images = list(_read_folder(Path(images), max_images))
    out = []
    for img in list(images)[:max_images]:
        lr = imresize(img.astype(np.float64), 1.0 / scale) if downscale else img
        lr = _center_patch(np.clip(lr, 0.0, 1.0), patch)
        out.append(np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32))
    if not out:
        raise ConfigError("no calibration images")
    return out


def _read_folder(folder: Path, limit: int) -> Iterator[np.ndarray]:
    """Up to ``limit`` RGB images ``(H, W, 3)`` float in [0, 1] from ``folder``."""
    from attnsr.data.io import read_image

    if not folder.is_dir():
        raise ConfigError(f"{folder}: calibration folder does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"{folder}: no calibration images (.png, .jpg, ...)")
    for path in paths[:limit]:
        pixels = read_image(path).pixels
        yield np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over a list of input arrays."""

    def __init__(self, inputs: Sequence[np.ndarray]) -> None:
        self._it = iter(list(inputs))

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}


def first_last_convs(path: str | Path) -> list[str]:
    """Names of the first and the last ``Conv`` node of the ONNX graph at ``path``."""
    import onnx

    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return sorted({convs[0], convs[-1]}) if convs else []


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


def quantize_onnx(
    fp32_path: str | Path, out_path: str | Path, calibration: Sequence[np.ndarray],
    config: QuantizeConfig = QuantizeConfig(),
) -> Path:
    """Write an int8 (QDQ) copy of ``fp32_path`` to ``out_path``, calibrated on
    ``calibration`` inputs ``(1, C, h, w)`` float32; the ``attnsr`` metadata is kept
    and gains a ``quantization`` entry."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    exclude = list(config.exclude_nodes)
    if config.keep_first_last:
        exclude += first_last_convs(fp32_path)
    with tempfile.TemporaryDirectory(prefix="attnsr-q-") as tmp:
        staged = Path(tmp) / "int8.onnx"
        try:
            with _quiet_preprocessing_advice():
                quantize_static(
                    str(fp32_path), str(staged), _Reader(calibration),
                    quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=_method(config.method), nodes_to_exclude=exclude,
                )
        except Exception as exc:  # onnxruntime raises assorted types
            raise ExportError(f"{fp32_path}: int8 quantization failed: {exc}") from exc
        _set_metadata(staged, {**read_metadata(fp32_path), "quantization": {
            "format": "QDQ", "weights": "int8", "activations": "uint8",
            "per_channel": config.per_channel, "method": config.method,
            "calibration_inputs": len(calibration), "float_nodes": exclude}})
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), out_path)
    log.info("int8 model written to %s", out_path)
    return out_path


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextmanager
def _quiet_preprocessing_advice() -> Iterator[None]:
    """onnxruntime logs "consider pre-processing" on the root logger at every call; its
    shape pre-processing made no difference to speed or accuracy here (measured)."""
    root, advice = logging.getLogger(), _DropAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _set_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for entry in list(proto.metadata_props):
        if entry.key == METADATA_KEY:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(path))
