"""oneDNN's fused CPU ops for eager inference (PyTorch CPU builds with mkldnn).

``torch.ops.mkldnn._linear_pointwise`` / ``_convolution_pointwise`` run a linear or a
convolution with an element-wise op fused (``"sigmoid"``, ``"none"``, ...) straight in
oneDNN. Callers use them only where :func:`eager_cpu_nhwc` holds and fall back to the
plain ops elsewhere (training, tracing, ONNX export, other devices) or when a build
lacks them (the op is None, or it raises ``RuntimeError``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def onednn_op(name: str) -> Any:
    """``torch.ops.mkldnn.<name>.default``, or None where this build has no oneDNN or
    no such op."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return getattr(torch.ops.mkldnn, name).default
    except (AttributeError, RuntimeError):
        return None


def eager_cpu_nhwc(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D fp32 CPU tensor in channels-last memory, outside autograd,
    tracing, scripting and ONNX export (where the fused ops may replace the plain ones)."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not torch.onnx.is_in_onnx_export())
