"""ONNX export with dynamic batch, height and width.

The model is wrapped in :class:`~attnsr.export.wrapper.PaddedModel` (padding to the
window multiple, crop and clamp happen inside the graph) and traced with PyTorch's
TorchScript-based exporter (``dynamo=False``). Shapes read from tensors stay symbolic
in that tracer, so window partitions and SwinIR's shifted-window masks are computed in
the graph for whatever size arrives. Each export is verified against the eager model
in onnxruntime at two sizes (one not a multiple of the window) unless told otherwise.

What the descriptor knows (name, arch, scale, traits, config) is stored as JSON in the
model's ``metadata_props`` under ``attnsr`` so a runtime can rebuild it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnsr.errors import ExportError
from attnsr.export.wrapper import exportable, frozen_rotations, static_only_reason
from attnsr.models.registry import config_to_dict
from attnsr.runner import Runner

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # LayerNormalization is a native op from 17
METADATA_KEY = "attnsr"
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
VERIFY_ATOL = 1e-4


def sample_size(desc: Runner) -> tuple[int, int]:
    """Trace size: a few windows tall, wide and not square (catches swapped H/W)."""
    m = max(desc.traits.multiple_of, 1)
    base = max(16, desc.traits.min_size, 2 * m)
    return base, base + m if m > 1 else base + 4


def descriptor_metadata(desc: Runner, **extra: Any) -> dict[str, Any]:
    """JSON-ready facts a runtime needs to rebuild the descriptor of an exported model."""
    config = desc.config
    return {
        "format": "attnsr-export", "version": 1, "name": desc.name, "arch": desc.arch,
        "scale": desc.scale, "in_channels": desc.in_channels,
        "out_channels": desc.out_channels, "traits": dataclasses.asdict(desc.traits),
        "config": config_to_dict(config) if dataclasses.is_dataclass(config) else None,
        "source": desc.source, **extra,
    }


def check_dynamic(desc: Runner, static_size: tuple[int, int] | None) -> None:
    """:class:`ExportError` when a dynamic-size export is asked of a model that can only
    be exported for one input size (see :func:`~attnsr.export.wrapper.static_only_reason`)."""
    reason = static_only_reason(desc.model)
    if reason and static_size is None:
        raise ExportError(f"{desc.name} can only be exported for a fixed input size: {reason}; "
                          "export it with --static H W (static_size=(H, W))")


def _trace_to_onnx(
    module: torch.nn.Module, sample: torch.Tensor, path: Path, *, opset: int, dynamic: bool
) -> None:
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every shape-derived Python value; we verify instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (sample,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes=axes if dynamic else None, do_constant_folding=True,
        )


def _bytes_per_px(desc: Runner, static_size: tuple[int, int] | None) -> float | None:
    """PyTorch's activation bytes per LR pixel (the tiler's estimate), kept in the file:
    a memory probe cannot see inside onnxruntime, so auto tiling needs it from here."""
    if static_size is not None:
        return None
    from attnsr.inference.memory import activation_bytes_per_pixel

    try:
        return float(activation_bytes_per_pixel(desc, channels=desc.in_channels))
    except Exception as exc:  # noqa: BLE001 - an estimate only; auto tiling falls back
        log.debug("activation memory probe of %s failed: %s", desc.name, exc)
        return None


def _write_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``attnsr`` metadata of an exported ``.onnx`` file ({} when absent)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return dict(json.loads(entry.value))
    return {}


def export_onnx(
    desc: Runner,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    static_size: tuple[int, int] | None = None,
    clamp: bool = True,
    verify: bool = True,
    measure_memory: bool = True,
) -> Path:
    """Export ``desc`` to ``path``: input ``lr`` ``(B, C, H, W)`` float32 in [0, 1],
    output ``sr`` ``(B, C', sH, sW)`` (clamped to [0, 1] when ``clamp``).

    Dynamic batch/height/width unless ``static_size`` ``(H, W)`` fixes the input size
    (required for models with :func:`~attnsr.export.wrapper.static_only_reason`).
    With ``verify``, onnxruntime must match eager PyTorch to :data:`VERIFY_ATOL` at the
    export size and at another size, else :class:`ExportError`. ``measure_memory``
    stores PyTorch's activation bytes per pixel (for auto tiling) in the metadata.
    """
    check_dynamic(desc, static_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = exportable(desc, clamp=clamp).cpu()
    h, w = static_size or sample_size(desc)
    sample = torch.rand(1, desc.in_channels, h, w)
    try:
        with frozen_rotations(module, sample):
            _trace_to_onnx(module, sample, path, opset=opset, dynamic=static_size is None)
    except Exception as exc:  # the exporter raises many types; report one line
        raise ExportError(f"{path}: ONNX export of {desc.name} failed: {exc}") from exc
    meta = descriptor_metadata(desc, clamp=clamp, opset=opset,
                               static_size=list(static_size) if static_size else None,
                               activation_bytes_per_px=_bytes_per_px(desc, static_size)
                               if measure_memory else None)
    _write_metadata(path, meta)
    if verify:
        sizes = [(h, w)] if static_size else [(h, w), (h + 3, w - 5)]
        verify_onnx(path, module, sizes)
    log.info("exported %s to %s", desc.name, path)
    return path


def onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (all graph optimisations).

    Without onnxruntime's memory pattern, which plans one block for every intermediate
    of a run at once: attnsr-real-x4 then grows by 118 MB instead of 217 MB for a
    396x396 tile (413 instead of 943 MB at 688 px for the 40-channel x4), at the same
    speed. The arena stays: without it every tensor goes to malloc, and with
    :func:`attnsr.malloc.tune_malloc`'s settings the heap fragments (661 MB at 396 px,
    2 GB at 688; measured with ``benchmarks/upscale_speed.py memory``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_mem_pattern = False
    # the workers spin between nodes (the default; without it a 72x72 image ran 8.9
    # instead of 6.9 ms on 2 threads): the torch work around a run is kept off them by
    # Runner.host_threads (one torch thread while an onnxruntime runner is in use)
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def verify_onnx(
    path: str | Path, module: torch.nn.Module, sizes: list[tuple[int, int]],
    *, atol: float = VERIFY_ATOL, channels: int = 3,
) -> float:
    """Max abs difference between onnxruntime and ``module`` over random inputs of
    ``sizes``; :class:`ExportError` when it exceeds ``atol``."""
    session = onnx_session(path)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        lr = torch.rand(1, channels, h, w, generator=gen)
        with torch.no_grad():
            ref = module(lr).numpy()
        got = session.run(None, {INPUT_NAME: lr.numpy()})[0]
        diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        worst = max(worst, diff)
        if diff > atol:
            raise ExportError(
                f"{path}: onnxruntime output differs from PyTorch at {h}x{w} "
                f"(max abs diff {diff:.3g}, shapes {got.shape} vs {ref.shape})"
            )
    return worst
