"""Deployment: ONNX and TorchScript export at any input size, int8 quantization, and
an onnxruntime-backed model descriptor.

>>> from attnsr.checkpoint import load_pretrained
>>> from attnsr.export import export_onnx, onnx_descriptor
>>> export_onnx(load_pretrained("attnsr-x4"), "attnsr-x4.onnx")
>>> sr = onnx_descriptor("attnsr-x4.onnx")(lr)          # lr (B, 3, H, W) in [0, 1]
"""

from attnsr.export.onnx import export_onnx, onnx_session, read_metadata
from attnsr.export.runtime import OnnxDescriptor, load_onnx, onnx_descriptor
from attnsr.export.torchscript import export_torchscript, load_torchscript
from attnsr.export.wrapper import BicubicUpsample, PaddedModel, exportable

__all__ = [
    "BicubicUpsample",
    "OnnxDescriptor",
    "PaddedModel",
    "export_onnx",
    "export_torchscript",
    "exportable",
    "load_onnx",
    "load_torchscript",
    "onnx_descriptor",
    "onnx_session",
    "read_metadata",
]
