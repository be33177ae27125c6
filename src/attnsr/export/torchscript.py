"""TorchScript export by tracing, verified at sizes other than the traced one.

``torch.jit.script`` does not compile attnsr models: every model keeps its frozen
config dataclass as an attribute (typed ``Any``), which TorchScript cannot type. We
therefore trace the :class:`~attnsr.export.wrapper.PaddedModel` wrapper. The JIT
tracer records sizes read from tensors symbolically, so the padding, window partitions
and shifted-window masks follow the input size; to catch any Python integer that was
baked in anyway, the traced module is compared with the eager one at two further
sizes (one not a multiple of the window, different aspect) before it is saved.

The descriptor metadata travels inside the archive as the extra file ``attnsr.json``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from attnsr.errors import ExportError
from attnsr.export.onnx import VERIFY_ATOL, check_dynamic, descriptor_metadata, sample_size
from attnsr.export.wrapper import exportable, frozen_rotations
from attnsr.runner import Runner

log = logging.getLogger(__name__)

EXTRA_FILE = "attnsr.json"


def check_sizes(desc: Runner) -> list[tuple[int, int]]:
    """Sizes a traced module is verified at: the trace size and two others."""
    h, w = sample_size(desc)
    return [(h, w), (h + 3, w - 5), (w + 1, h)]


def verify_traced(
    traced: torch.nn.Module, eager: torch.nn.Module, sizes: list[tuple[int, int]],
    *, channels: int = 3, atol: float = VERIFY_ATOL,
) -> float:
    """Max abs difference traced vs eager over random inputs of ``sizes``;
    :class:`ExportError` when above ``atol`` or when the shapes differ."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for h, w in sizes:
            lr = torch.rand(1, channels, h, w, generator=gen)
            got, ref = traced(lr), eager(lr)
            if got.shape != ref.shape:
                raise ExportError(f"traced model gives shape {tuple(got.shape)} at {h}x{w}, "
                                  f"eager {tuple(ref.shape)}")
            worst = max(worst, float((got - ref).abs().max()))
            if worst > atol:
                raise ExportError(f"traced model differs from eager at {h}x{w} "
                                  f"(max abs diff {worst:.3g})")
    return worst


def trace_module(
    desc: Runner, *, clamp: bool = True, static_size: tuple[int, int] | None = None
) -> torch.jit.ScriptModule:
    """Trace ``desc`` (wrapped to pad/crop/clamp) on CPU and verify it at other sizes
    (only at ``static_size`` when given: the module is then valid for that size only)."""
    check_dynamic(desc, static_size)
    eager = exportable(desc, clamp=clamp).cpu()
    h, w = static_size or sample_size(desc)
    sample = torch.rand(1, desc.in_channels, h, w)
    with warnings.catch_warnings(), torch.no_grad(), frozen_rotations(eager, sample):
        warnings.simplefilter("ignore")  # tracer warnings: the verification decides
        try:
            traced = torch.jit.trace(eager, (sample,), check_trace=False)
        except Exception as exc:
            raise ExportError(f"TorchScript trace of {desc.name} failed: {exc}") from exc
    sizes = [(h, w)] if static_size else check_sizes(desc)
    verify_traced(traced, eager, sizes, channels=desc.in_channels)
    return traced


def export_torchscript(
    desc: Runner, path: str | Path, *, clamp: bool = True,
    static_size: tuple[int, int] | None = None,
) -> Path:
    """Save a traced, verified TorchScript archive of ``desc`` to ``path``:
    ``lr`` ``(B, C, H, W)`` float32 in [0, 1] of any size (of ``static_size`` only, when
    given) -> ``sr`` ``(B, C', sH, sW)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced = trace_module(desc, clamp=clamp, static_size=static_size)
    meta = descriptor_metadata(desc, clamp=clamp,
                               static_size=list(static_size) if static_size else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is "deprecated"
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})
    log.info("exported %s to %s", desc.name, path)
    return path


def load_torchscript(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load an archive written by :func:`export_torchscript`: (module, metadata)."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    meta = json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else {}
    return module.eval(), meta
