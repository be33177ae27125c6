"""How much memory a tile needs: the automatic tile size of tiled inference.

The model's activation memory per LR pixel is measured by a probe forward on two small
inputs while a dispatch mode tracks the bytes of every live tensor
(:class:`TensorMemoryProbe`; works on any device), then multiplied by a safety factor of
2 (kernel workspaces, allocator slack: over the zoo the resident-memory growth of a
forward is 0.5-1x the estimate). :func:`auto_tile_size` chooses the largest tile whose
activations plus strip accumulator (see :mod:`attnsr.inference.tiling`) fit the budget;
the default budget is ``min(MemAvailable / 2, 1.25 GiB)`` on CPU (a 4000x3000 photo
upscaled x4 and streamed to a PNG then peaks under 1.2 GiB: ``benchmarks/upscale_speed.py
memory``) and half the free memory on CUDA; the caller subtracts the image buffers it
holds (input, output array) first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import weakref
from pathlib import Path

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnsr.fs import atomic_write
from attnsr.inference.tiling import TileFn, round_up, size_requirements
from attnsr.runner import Runner

log = logging.getLogger(__name__)
GIB = 1024**3
SAFETY = 2.0  # measured RSS / probe estimate: 0.5-1.0 over the zoo (CPU)
MIN_AUTO_TILE = 64
MAX_AUTO_TILE = 2048


class TensorMemoryProbe(TorchDispatchMode):
    """Tracks the bytes of live tensor storages created inside the mode; ``peak`` is
    the maximum seen. Device-agnostic (counts what operators return)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[tuple[str, int], int] = {}

    def _release(self, key: tuple[str, int], nbytes: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                storage = t.untyped_storage()
                key, nbytes = (str(t.device), storage.data_ptr()), storage.nbytes()
                if key not in self._refs:
                    self._refs[key] = 0
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                self._refs[key] += 1
                weakref.finalize(t, self._release, key, nbytes)
        return out


def _probe_peak(fn: TileFn, channels: int, size: int, device: torch.device) -> int:
    x = torch.rand(1, channels, size, size, device=device)
    probe = TensorMemoryProbe()
    with torch.inference_mode(), probe:
        y = fn(x)
    del y
    return probe.peak


def activation_bytes_per_pixel(
    model: Runner | TileFn, *, channels: int = 3, device: torch.device | str = "cpu"
) -> float:
    """Peak activation bytes per LR pixel of one forward (measured on two small probes,
    slope of peak vs area, times :data:`SAFETY`)."""
    multiple, min_size = size_requirements(model)
    a = round_up(max(32, min_size), multiple)
    b = round_up(2 * a, multiple)
    dev = torch.device(device)
    pa = _probe_peak(model, channels, a, dev)
    pb = _probe_peak(model, channels, b, dev)
    slope = max((pb - pa) / (b * b - a * a), pb / (b * b))
    return SAFETY * slope


def probe_key(runner: Runner) -> str:
    """What a torch runner's activation memory per pixel depends on: the architecture
    and config (not the weights), torch, the device type, precision and TTA."""
    text = (f"{runner.arch}|{runner.config}|{runner.in_channels}|{torch.__version__}|"
            f"{runner.device.type}|{runner.precision}|{runner.tta}")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def runner_bytes_per_pixel(runner: Runner) -> float:
    """:func:`activation_bytes_per_pixel` of ``runner``: what its export recorded (an
    onnxruntime runner), else the probe, kept in the user cache (``$ATTNSR_CACHE/memory``)
    so that only the first process ever pays for it (most of it the one-off import of
    ``torch._dynamo`` that a ``TorchDispatchMode`` triggers: 1.5-5 s, measured, on this
    project's CPU)."""
    if runner.activation_bytes_per_px:
        return float(runner.activation_bytes_per_px)
    from attnsr.export.runtime import cache_dir

    path = cache_dir().parent / "memory" / f"{runner.arch}-{probe_key(runner)}.json"
    try:
        return float(json.loads(path.read_text())["bytes_per_px"])
    except (OSError, ValueError, KeyError):
        pass
    value = float(activation_bytes_per_pixel(runner, channels=runner.in_channels,
                                             device=runner.device))
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps({"bytes_per_px": value, "model": runner.name}))
    except OSError as exc:  # a read-only cache only costs a probe next time
        log.debug("activation memory not cached: %s", exc)
    return value


def available_memory(device: torch.device | str = "cpu") -> int:
    """Free memory in bytes: free VRAM on CUDA, ``MemAvailable`` (Linux) on CPU, else 8 GiB."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 * GIB


# Cap of the CPU budget: what one upscale of any size may use beside the interpreter.
CPU_BUDGET_CAP = 5 * GIB // 4


def default_budget(device: torch.device | str = "cpu") -> int:
    """Bytes a tiled run may use for activations and its strip accumulator."""
    avail = available_memory(device)
    if torch.device(device).type == "cpu":
        return min(avail // 2, CPU_BUDGET_CAP)
    return avail // 2


def auto_tile_size(
    bytes_per_px: float, *, width: int, scale: int, out_channels: int, budget: int,
    multiple: int = 1,
) -> int:
    """Largest tile ``T`` with ``T^2 * bytes_per_px + T * scale * (scale * width) * C * 4``
    (activations + float strip accumulator) within ``budget``; rounded down to
    ``multiple`` and kept in [64, 2048]."""
    a = bytes_per_px
    b = 4.0 * scale * scale * width * out_channels  # accumulator bytes per LR row of tile
    t = (-b + math.sqrt(b * b + 4.0 * a * budget)) / (2.0 * a)
    t = int(min(max(t, MIN_AUTO_TILE), MAX_AUTO_TILE))
    return max(t // multiple * multiple, multiple)
