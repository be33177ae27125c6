"""Deployment: ONNX and TorchScript export at any input size, int8 quantization, and
the onnxruntime backend of the runner.

>>> import attnsr
>>> from attnsr.export import export_onnx
>>> export_onnx(attnsr.load_pretrained("attnsr-x4"), "attnsr-x4.onnx")
>>> sr = attnsr.resolve("attnsr-x4.onnx")(lr)          # lr (B, 3, H, W) in [0, 1]
"""

from attnsr.export.onnx import export_onnx, onnx_session, read_metadata
from attnsr.export.runtime import load_onnx, onnx_runner
from attnsr.export.torchscript import export_torchscript, load_torchscript
from attnsr.export.wrapper import PaddedModel, exportable
from attnsr.models.bicubic import BicubicUpsample

__all__ = [
    "BicubicUpsample",
    "PaddedModel",
    "export_onnx",
    "export_torchscript",
    "exportable",
    "load_onnx",
    "load_torchscript",
    "onnx_runner",
    "onnx_session",
    "read_metadata",
]
