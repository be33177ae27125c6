"""The GPU kit: one command that checks and measures every GPU path of attnsr on one GPU
and writes one JSON (``docs/gpu.md`` explains it and holds the table made from it).

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out gpu_check.json   # one GPU, < 8 min
    PYTHONPATH=src python3 benchmarks/gpu_check.py --dry-run              # CPU, CI, seconds
    python3 benchmarks/gpu_check.py --markdown gpu_check.json             # JSON -> tables

Sections (each timed and guarded: one that fails records its error and the rest run; all
share a time budget, ``--budget`` seconds, handed out in proportion and passed on when a
section finishes early; the JSON is rewritten after every section, so a run cut short
still leaves what it measured):

- ``env``: torch / CUDA / cuDNN / NCCL versions, the GPU, TF32 flags, the Python packages
  found, the bundled models (``attnsr models --pretrained``).
- ``parity``: every bundled model through :func:`attnsr.resolve` (runner, whole image)
  and :class:`~attnsr.inference.upscale.Upscaler` (whole and tiled, uint8) on the GPU vs
  the same on the CPU, fp32: at most 1 level of 255 apart (``pass``).
- ``precision``: bf16 and fp16 per model (difference from fp32, time), and the runner's
  fp32 fallback exercised: a forward hook makes the next low-precision output NaN (or
  black), the runner must recompute it in fp32 (``fallbacks`` + 1, finite, equal to the
  fp32 output), on one tile of a tiled upscale too; a hugely scaled input shows whether
  fp16 overflows by itself.
- ``compile``: ``torch.compile`` on/off per model at the 4K-frame input: compile time,
  eager vs compiled time per frame, and the compiled output vs the eager one in levels.
- ``throughput``: frames whose output is 3840x2160 (960x540 at x4) per second per model,
  eager / CUDA graph / compiled, precision, batch size (the real-time 4K target: 60 fps);
  frames stay on the GPU (the model's throughput, not the video codec's).
- ``train``: optimizer steps/s of the real training loop (:class:`attnsr.train.loop.Trainer`,
  bf16 autocast) on a small generated folder, per bundled architecture.
- ``ddp``: a one-process NCCL process group in which the trainer takes its distributed
  paths (its ``DistributedDataParallel`` wrapper, the loss all-reduce, the barriers), a
  few steps: the losses and weights must equal those of the plain trainer.

``--dry-run`` runs all of it on the CPU with tiny sizes (gloo instead of NCCL, the CUDA
graph replaced by a plain call, ``torch.compile`` with the ``eager`` backend), so the
code cannot rot between GPU runs (``tests/test_gpu_check.py``).

Dependencies: torch and attnsr (with its bundled weights) only; attnsr needs numpy and
Pillow. attnsr is imported inside the sections, so a missing package fails the sections
that need it (recorded in the JSON), not the run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("gpu_check")

SCHEMA = 1
FOURK = (2160, 3840)  # output frame (H, W) of the throughput section
TARGET_FPS = 60.0
# Share of the time budget per section (unused time passes on to the next ones).
SHARES = {"env": 0.01, "parity": 0.10, "precision": 0.10, "compile": 0.22,
          "throughput": 0.30, "train": 0.20, "ddp": 0.07}
SECTIONS = tuple(SHARES)
# import name -> distribution name, for the env section
PACKAGES = {"numpy": "numpy", "PIL": "pillow", "typer": "typer", "rich": "rich",
            "safetensors": "safetensors", "yaml": "PyYAML", "matplotlib": "matplotlib",
            "onnxruntime": "onnxruntime"}


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big each measurement is (GPU run vs CPU dry run). Sizes are LR pixels."""

    parity_hw: tuple[int, int]
    tile: int
    overlap: int
    frame_out_hw: tuple[int, int]  # output frame; the LR frame is this / scale
    batch: int  # frames per call in the batched throughput settings
    bench_s: float  # seconds of timed calls per setting (after warm-up)
    bench_iters: int  # at most this many timed calls per setting
    section_models: int  # models in the precision and compile sections (0: all)
    train_steps: int
    train_batch: int
    train_patch: int
    train_images: int
    train_image_side: int
    train_workers: int
    train_archs: int  # architectures trained (0: all)
    ddp_steps: int
    compile_backend: str
    threads: int  # CPU threads (0: torch's default)


GPU_SIZES = Sizes(parity_hw=(192, 256), tile=128, overlap=32, frame_out_hw=FOURK, batch=4,
                  bench_s=1.0, bench_iters=200, section_models=0, train_steps=40,
                  train_batch=32, train_patch=48, train_images=16, train_image_side=256,
                  train_workers=4, train_archs=0, ddp_steps=5, compile_backend="inductor",
                  threads=0)
DRY_SIZES = Sizes(parity_hw=(32, 40), tile=24, overlap=8, frame_out_hw=(48, 72), batch=2,
                  bench_s=0.05, bench_iters=2, section_models=1, train_steps=3, train_batch=4,
                  train_patch=8, train_images=2, train_image_side=40, train_workers=0,
                  train_archs=1, ddp_steps=2, compile_backend="eager", threads=1)


class Context:
    """The run's device, sizes, models and clock."""

    def __init__(self, device: torch.device, sizes: Sizes, budget_s: float, dry_run: bool,
                 models: list[str] | None) -> None:
        self.device, self.sizes, self.dry_run = device, sizes, dry_run
        self.start = time.perf_counter()
        self.deadline = self.start + budget_s
        self.section_deadline = self.deadline
        self._models = models

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def models(self) -> list[str]:
        """The bundled models (``attnsr models --pretrained``), or those asked for."""
        if self._models is None:
            from attnsr.models import registry

            self._models = [t.name for t in registry.list_pretrained()]
        return self._models

    def left(self) -> float:
        """Seconds left to the current section."""
        return min(self.section_deadline, self.deadline) - time.perf_counter()

    def out_of_time(self, need: float = 0.0) -> bool:
        return self.left() <= need


# --------------------------------------------------------------------------- helpers
class OutOfTime(BaseException):
    """The run's hard limit passed (raised by SIGALRM in whatever was running; a
    BaseException so that no ``except Exception`` inside torch swallows it)."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in the main thread after ``seconds`` (a compile that
    overruns its section must not overrun the run); no-op off the POSIX main thread."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_signum: int, _frame: Any) -> None:
        raise OutOfTime(f"hard time limit ({seconds:.0f} s) reached")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A deterministic ``(1, 3, H, W)`` image in [0, 1]: smooth colour, sharp diagonal
    stripes (edges at every angle the model sees) and a little noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    stripes = (((xx + 2 * yy) // 5) % 2).float()[None, None]
    noise = torch.rand(1, 3, height, width, generator=g)
    return (0.6 * smooth + 0.25 * stripes + 0.15 * noise).clamp(0.0, 1.0)


def levels(a: Any, b: Any) -> dict[str, float]:
    """How far two images are apart in levels of 255: float tensors in [0, 1] or uint8
    arrays of the same shape."""
    if isinstance(a, Tensor):
        d = (a.detach().float().cpu() - b.detach().float().cpu()).abs() * 255.0
    else:
        d = torch.from_numpy(a.astype("int16")) - torch.from_numpy(b.astype("int16"))
        d = d.abs().float()
    finite = bool(torch.isfinite(d).all())
    return {"max_levels": float(d.max()) if finite else math.inf,
            "mean_levels": float(d.mean()) if finite else math.inf,
            "frac_over_half_level": float((d > 0.5).float().mean())}


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of ``a`` against ``b``, both in [0, 1] (inf when equal)."""
    mse = float(((a.float().cpu() - b.float().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def time_calls(fn: Callable[[], Any], ctx: Context, *, warmup: int = 2,
               fraction: float = 1.0) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time it for ``fraction * sizes.bench_s`` seconds
    or ``sizes.bench_iters`` calls, whichever comes first (and never past the section's
    deadline). Returns the calls timed and ms per call."""
    for _ in range(warmup):
        fn()
    sync(ctx.device)
    n, start = 0, time.perf_counter()
    limit = min(ctx.sizes.bench_s * fraction, max(ctx.left(), 0.0))
    while n < ctx.sizes.bench_iters and (n == 0 or time.perf_counter() - start < limit):
        fn()
        n += 1
        if ctx.cuda and n % 8 == 0:
            sync(ctx.device)
    sync(ctx.device)
    seconds = time.perf_counter() - start
    return {"calls": n, "ms_per_call": 1000.0 * seconds / n}


def reset_dynamo() -> None:
    """Forget compiled graphs (each measurement compiles afresh; guards stay few)."""
    import torch._dynamo  # imported by torch.compile anyway; explicit for old torch

    torch._dynamo.reset()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmul/conv on or off inside the block (CUDA; no effect on the CPU)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def poisoned(model: nn.Module, kind: str, calls: int = 1) -> Iterator[dict[str, int]]:
    """Make the next ``calls`` outputs of ``model`` NaN (``kind="nonfinite"``) or zero
    (``"black"``), as a low-precision overflow would; later calls are untouched, so the
    runner's fp32 recomputation sees the real model."""
    state = {"left": calls}

    def hook(_module: nn.Module, _inputs: Any, out: Tensor) -> Tensor | None:
        if state["left"] <= 0:
            return None
        state["left"] -= 1
        return torch.full_like(out, math.nan) if kind == "nonfinite" else torch.zeros_like(out)

    handle = model.register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


def per_model(ctx: Context, names: list[str], fn: Callable[[str], dict[str, Any]], *,
              need: float = 0.0, strict: bool = False) -> dict[str, Any]:
    """``fn(name)`` per model while the section has time (``need`` seconds at least); a
    model that fails records its error and the others still run. ``pass``: every model
    that ran passed (``strict``: and none was skipped)."""
    rows: dict[str, Any] = {}
    for name in names:
        if ctx.out_of_time(need):
            rows[name] = {"skipped": "time budget"}
            continue
        try:
            rows[name] = fn(name)
        except Exception as exc:  # noqa: BLE001 - one model failing is a result
            log.exception("%s failed", name)
            rows[name] = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
        if ctx.cuda:
            torch.cuda.empty_cache()
    verdicts = [r["pass"] for r in rows.values() if "pass" in r]
    complete = len(verdicts) == len(rows) or not strict
    return {"models": rows, "pass": bool(verdicts) and complete and all(verdicts)}


def frame_hw(ctx: Context, scale: int) -> tuple[int, int]:
    """The LR frame whose x``scale`` output is ``sizes.frame_out_hw`` (960x540 at x4)."""
    h, w = ctx.sizes.frame_out_hw
    return h // scale, w // scale


def unique_configs(ctx: Context, names: list[str]) -> list[str]:
    """``names`` ordered so that one model per (preset, overrides, scale) comes first
    (models sharing a graph follow; compile caches make them cheap)."""
    from attnsr.models import registry

    seen: set[str] = set()
    first, rest = [], []
    for name in names:
        tag = registry.get_pretrained(name)
        key = repr((tag.preset, sorted(tag.overrides.items()), tag.scale)) if tag else name
        (rest if key in seen else first).append(name)
        seen.add(key)
    return first + rest


# --------------------------------------------------------------------------- env
def section_env(ctx: Context) -> dict[str, Any]:
    """Versions, the device, the packages found, the bundled models."""
    packages: dict[str, str | None] = {}
    for name, dist in PACKAGES.items():
        if importlib.util.find_spec(name) is None:
            packages[name] = None
            continue
        try:
            importlib.import_module(name)
            packages[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "?"
        except Exception as exc:  # noqa: BLE001 - a broken package is a finding, not a crash
            packages[name] = f"import error: {exc}"
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_threads": torch.get_num_threads(), "packages": packages,
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                 "cudnn": torch.backends.cudnn.allow_tf32},
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count,
                      "bf16": torch.cuda.is_bf16_supported()}
        with contextlib.suppress(Exception):
            version = torch.cuda.nccl.version()
            env["nccl"] = (".".join(map(str, version)) if isinstance(version, tuple)
                           else str(version))
    import attnsr

    env["attnsr"] = attnsr.__version__
    env["models"] = ctx.models
    return env


# --------------------------------------------------------------------------- parity
def _parity_one(ctx: Context, name: str, lr: Tensor, hwc: Any) -> dict[str, Any]:
    """One model: device vs CPU, fp32, runner whole and Upscaler whole / tiled."""
    import attnsr
    from attnsr.inference.upscale import Upscaler

    s = ctx.sizes
    ref = attnsr.resolve(name, device="cpu", precision="fp32", backend="torch")(lr)
    runner = attnsr.resolve(name, device=ctx.device, precision="fp32", backend="torch")
    row: dict[str, Any] = {"runner_whole": levels(runner(lr), ref)}
    with tf32(False):
        row["runner_whole_no_tf32"] = levels(runner(lr), ref)
    outs = {}
    for label, tile in (("upscaler_whole", 0), ("upscaler_tiled", s.tile)):
        pair = [Upscaler(name, device=dev, precision="fp32", tile=tile, overlap=s.overlap,
                         backend="torch").upscale_hwc(hwc) for dev in ("cpu", ctx.device)]
        row[label] = levels(pair[1], pair[0])
        outs[label] = pair[1]
    # Information only: tiles equal the whole image from Upscaler.min_exact_tile() on.
    row["tiled_vs_whole_on_device"] = levels(outs["upscaler_tiled"], outs["upscaler_whole"])
    row["tile"], row["overlap"] = s.tile, s.overlap
    checked = ("runner_whole", "upscaler_whole", "upscaler_tiled")
    row["pass"] = all(row[k]["max_levels"] <= 1.0 for k in checked)
    return row


def section_parity(ctx: Context) -> dict[str, Any]:
    """Every bundled model, device vs CPU in fp32: the runner on the whole image, the
    Upscaler whole and tiled (same tile plan on both), uint8 out; every model must pass."""
    lr = make_image(*ctx.sizes.parity_hw)
    hwc = lr[0].permute(1, 2, 0).contiguous().numpy()
    result = per_model(ctx, ctx.models, lambda name: _parity_one(ctx, name, lr, hwc),
                       strict=True)
    return {"image_hw": list(ctx.sizes.parity_hw), **result}


# --------------------------------------------------------------------------- precision
def _forced_fallback(runner: Any, lr: Tensor, ref: Tensor, kind: str,
                     noise: float) -> dict[str, Any]:
    """Poison the next low-precision forward; the runner must recompute it in fp32: one
    fallback, finite, equal to the fp32 output ``ref`` (to ``noise``: how far two fp32
    runs on this device differ)."""
    before = runner.fallbacks
    with poisoned(runner.model, kind):
        out = runner(lr)
    fired = runner.fallbacks - before
    finite = bool(torch.isfinite(out).all())
    diff = levels(out, ref)["max_levels"]
    return {"fallbacks": fired, "finite": finite, "max_levels_vs_fp32": diff,
            "pass": fired == 1 and finite and diff <= max(1e-3, 2 * noise)}


def _forced_tiled(ctx: Context, name: str, precision: str, hwc: Any) -> dict[str, Any]:
    """The same through a tiled Upscaler: one tile poisoned, one fallback, finite."""
    from attnsr.inference.upscale import Upscaler

    up = Upscaler(name, device=ctx.device, precision=precision, tile=ctx.sizes.tile,
                  overlap=ctx.sizes.overlap, backend="torch")
    up.runner.set_precision(precision)  # fp16 even where the traits would refuse it
    with poisoned(up.runner.model, "nonfinite"):
        out = up.upscale_hwc(hwc, dtype="float32")
    finite = bool(torch.isfinite(torch.from_numpy(out)).all())
    return {"fallbacks": up.runner.fallbacks, "finite": finite,
            "pass": up.runner.fallbacks == 1 and finite}


def _overflow(runner: Any, lr: Tensor) -> dict[str, Any]:
    """A hugely scaled input (x 1e5): does the precision overflow by itself?"""
    before = runner.fallbacks
    out = runner(lr * 1e5)
    return {"fallbacks": runner.fallbacks - before, "finite": bool(torch.isfinite(out).all())}


def _one_precision(ctx: Context, runner: Any, precision: str, lr: Tensor, ref: Tensor,
                   hwc: Any, noise: float) -> dict[str, Any]:
    """``runner`` at ``precision`` (set even where the traits would refuse it): time,
    difference from the fp32 output ``ref``, the fallback forced three ways."""
    runner.set_precision(precision)
    runner.fallbacks = 0
    out = runner(lr)
    return {
        "ms": time_calls(lambda: runner(lr), ctx, fraction=0.2)["ms_per_call"],
        "natural_fallbacks": runner.fallbacks, "psnr_vs_fp32": psnr(out, ref),
        **levels(out, ref),
        "forced_nonfinite": _forced_fallback(runner, lr, ref, "nonfinite", noise),
        "forced_black": _forced_fallback(runner, lr, ref, "black", noise),
        "forced_tiled": _forced_tiled(ctx, runner.name, precision, hwc),
        "overflow_input": _overflow(runner, lr),
    }


def _precision_one(ctx: Context, name: str, lr: Tensor, hwc: Any) -> dict[str, Any]:
    """One model: fp32 reference, then bf16 and fp16."""
    import attnsr
    from attnsr.resolver import choose_precision

    runner = attnsr.resolve(name, device=ctx.device, precision="fp32", backend="torch")
    ref = runner(lr)
    noise = levels(runner(lr), ref)["max_levels"]
    row: dict[str, Any] = {
        "fp32_run_to_run_levels": noise,
        "fp16_safe": runner.traits.fp16_safe, "bf16_safe": runner.traits.bf16_safe,
        "auto": choose_precision("auto", ctx.device, runner),
        "fp32_ms": time_calls(lambda: runner(lr), ctx, fraction=0.2)["ms_per_call"]}
    for precision in ("bf16", "fp16"):
        row[precision] = _one_precision(ctx, runner, precision, lr, ref, hwc, noise)
    runner.set_precision("fp32")
    row["pass"] = all(row[p][k]["pass"] for p in ("bf16", "fp16")
                      for k in ("forced_nonfinite", "forced_black", "forced_tiled"))
    return row


def section_precision(ctx: Context) -> dict[str, Any]:
    """bf16 and fp16 per model vs fp32 on the device, with the fallback exercised."""
    lr = make_image(*ctx.sizes.parity_hw, seed=1)
    hwc = lr[0].permute(1, 2, 0).contiguous().numpy()
    names = unique_configs(ctx, ctx.models)[: ctx.sizes.section_models or None]
    result = per_model(ctx, names, lambda name: _precision_one(ctx, name, lr, hwc))
    return {"image_hw": list(ctx.sizes.parity_hw), **result}


# --------------------------------------------------------------------------- compile
def _compile(module: nn.Module, ctx: Context, mode: str | None = None) -> nn.Module:
    kwargs: dict[str, Any] = {"backend": ctx.sizes.compile_backend, "dynamic": False}
    if mode and ctx.sizes.compile_backend == "inductor":
        kwargs["mode"] = mode
    return torch.compile(module, **kwargs)


def _compile_one(ctx: Context, name: str) -> dict[str, Any]:
    """One model: eager, then compiled, at the frame input and the auto precision."""
    import attnsr

    reset_dynamo()
    runner = attnsr.resolve(name, device=ctx.device, precision="auto", backend="torch")
    lr = make_image(*frame_hw(ctx, runner.scale), seed=2).to(ctx.device)
    eager_out = runner(lr)
    eager = time_calls(lambda: runner(lr), ctx)
    original = runner.model
    runner.model = _compile(original, ctx)
    try:
        sync(ctx.device)
        start = time.perf_counter()
        compiled_out = runner(lr)
        sync(ctx.device)
        compile_s = time.perf_counter() - start
        compiled = time_calls(lambda: runner(lr), ctx)
    finally:
        runner.model = original
    row = {"precision": runner.precision, "lr_hw": list(lr.shape[-2:]),
           "backend": ctx.sizes.compile_backend, "compile_s": compile_s,
           "eager_ms": eager["ms_per_call"], "compiled_ms": compiled["ms_per_call"],
           "speedup": eager["ms_per_call"] / compiled["ms_per_call"],
           **{f"vs_eager_{k}": v for k, v in levels(compiled_out, eager_out).items()}}
    row["pass"] = row["vs_eager_max_levels"] <= 1.0
    return row


def section_compile(ctx: Context) -> dict[str, Any]:
    """torch.compile on/off per model at the frame input, the auto precision: compile
    time, ms per frame each way, compiled vs eager output in levels."""
    names = unique_configs(ctx, ctx.models)[: ctx.sizes.section_models or None]
    return per_model(ctx, names, lambda name: _compile_one(ctx, name),
                     need=10.0 if ctx.cuda else 0.0)


# --------------------------------------------------------------------------- throughput
class Graphed:
    """The runner's pad -> forward -> clamp on a static input, captured as a CUDA graph
    (replayed per call). No fp32 fallback check inside the graph (it needs a host sync):
    what a real-time pipeline would run once the precision is known to be safe. Off CUDA
    (dry run) the same static-buffer code runs without capture."""

    def __init__(self, runner: Any, batch: Tensor) -> None:
        from attnsr.runner import PRECISIONS

        self.runner, self.static_in = runner, batch.clone()
        self.dtype = PRECISIONS[runner.precision]
        self.graph: Any = None
        if batch.is_cuda:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: cuDNN picks its kernels outside the capture
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = self._step()
        else:
            self.static_out = self._step()

    def _step(self) -> Tensor:
        # No autocast weight cache: its casts would be made once, inside the capture.
        with torch.inference_mode(), torch.autocast(self.static_in.device.type,
                                                     dtype=self.dtype or torch.bfloat16,
                                                     enabled=self.dtype is not None,
                                                     cache_enabled=False):
            return self.runner.run(self.static_in).float().clamp_(0.0, 1.0)

    def __call__(self, batch: Tensor) -> Tensor:
        self.static_in.copy_(batch)
        if self.graph is None:
            self.static_out = self._step()
        else:
            self.graph.replay()
        return self.static_out


def _settings(ctx: Context, auto: str, full: bool) -> list[tuple[str, str, int]]:
    """(mode, precision, batch) to measure: the whole grid for the first model, the
    likely best ones for the others."""
    b = ctx.sizes.batch
    if not full:
        return [("eager", auto, b), ("cuda_graph", auto, b)]
    grid = [("eager", "fp32", 1), ("eager", auto, 1), ("eager", auto, b),
            ("eager", "bf16", b), ("cuda_graph", auto, 1), ("cuda_graph", auto, b),
            ("cuda_graph", auto, 2 * b), ("compile", auto, b), ("compile_cuda_graph", auto, b)]
    return list(dict.fromkeys(grid))


def _one_setting(ctx: Context, runner: Any, mode: str, batch: Tensor) -> dict[str, Any]:
    """Frames/s of one setting; the runner is left as it was."""
    original = runner.model
    try:
        fn: Callable[[], Any]
        compile_s = None
        if mode in ("compile", "compile_cuda_graph"):
            reset_dynamo()
            runner.model = _compile(original, ctx, None if mode == "compile"
                                    else "reduce-overhead")
            start = time.perf_counter()
            runner(batch)
            sync(ctx.device)
            compile_s = time.perf_counter() - start
        if mode == "cuda_graph":
            graphed = Graphed(runner, batch)
            fn = lambda: graphed(batch)  # noqa: E731
        else:
            fn = lambda: runner(batch)  # noqa: E731
        timing = time_calls(fn, ctx)
    finally:
        runner.model = original
    fps = batch.shape[0] * 1000.0 / timing["ms_per_call"]
    out_hw = (batch.shape[-2] * runner.scale, batch.shape[-1] * runner.scale)
    return {"fps": fps, "ms_per_frame": 1000.0 / fps, "calls": timing["calls"],
            "compile_s": compile_s, "graph_captured": mode == "cuda_graph" and batch.is_cuda,
            "realtime_4k": fps >= TARGET_FPS if out_hw == FOURK else None}


def _throughput_row(ctx: Context, runner: Any, mode: str, precision: str,
                    batch: int) -> dict[str, Any]:
    """One (model, mode, precision, batch) measurement; an error is recorded in the row."""
    h, w = frame_hw(ctx, runner.scale)
    row: dict[str, Any] = {"model": runner.name, "mode": mode, "precision": precision,
                           "batch": batch, "lr_hw": [h, w],
                           "out_hw": [h * runner.scale, w * runner.scale]}
    if ctx.out_of_time(need=15.0 if (ctx.cuda and "compile" in mode) else 0.0):
        return {**row, "skipped": "time budget"}
    try:
        runner.set_precision(precision)
        frames = torch.stack([make_image(h, w, seed=k)[0] for k in range(batch)])
        reset_peak(ctx.device)
        row.update(_one_setting(ctx, runner, mode, frames.to(ctx.device)))
        row["peak_gib"] = peak_gib(ctx.device)
    except Exception as exc:  # noqa: BLE001 - one setting failing is a result
        row["error"] = f"{type(exc).__name__}: {exc}"
        log.warning("throughput %s %s: %s", runner.name, mode, row["error"])
    if ctx.cuda:
        torch.cuda.empty_cache()
    return row


def section_throughput(ctx: Context) -> dict[str, Any]:
    """Frames/s to a 3840x2160 output (960x540 at x4) per model and setting: the whole
    grid for the first x4 model, eager and CUDA graph for the others; the compiled
    settings last (their compile time is the least predictable)."""
    import attnsr

    runners = [attnsr.resolve(n, device=ctx.device, precision="auto", backend="torch")
               for n in unique_configs(ctx, ctx.models)]
    runners.sort(key=lambda r: r.scale != 4)  # stable: x4 first (960x540 -> 4K)
    plan = [(r, setting) for i, r in enumerate(runners)
            for setting in _settings(ctx, r.precision, full=i == 0)]
    plan.sort(key=lambda item: "compile" in item[1][0])  # stable: compiled ones last
    rows = [_throughput_row(ctx, r, *setting) for r, setting in plan]
    done = [r for r in rows if "fps" in r]
    best = max(done, key=lambda r: r["fps"]) if done else None
    return {"target_fps": TARGET_FPS, "rows": rows, "best": best,
            "realtime_4k": bool(best and best["realtime_4k"])}


# --------------------------------------------------------------------------- training
def make_folder(folder: Path, n: int, side: int) -> Path:
    """``n`` generated ``side x side`` PNGs (the package's own image writer)."""
    from attnsr.data.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = make_image(side, side, seed=100 + i)[0].permute(1, 2, 0)
        write_image(folder / f"{i:03d}.png", (img * 255).round().to(torch.uint8).numpy())
    return folder


def architectures() -> list[dict[str, Any]]:
    """One entry per bundled (preset, overrides, scale): what ``attnsr train`` would
    build for it."""
    from attnsr.models import registry

    seen, out = set(), []
    for tag in registry.list_pretrained():
        key = repr((tag.preset, sorted(tag.overrides.items()), tag.scale))
        if key not in seen:
            seen.add(key)
            out.append({"preset": tag.preset, "overrides": dict(tag.overrides),
                        "scale": tag.scale, "like": tag.name})
    return out


def train_values(ctx: Context, arch: dict[str, Any], data: Path, run_dir: Path,
                 steps: int) -> dict[str, Any]:
    """A training config (the mapping ``attnsr train`` reads from YAML)."""
    s = ctx.sizes
    return {
        "scale": arch["scale"], "total_iters": steps, "batch_size": s.train_batch,
        "run_dir": str(run_dir),
        "model": {"name": arch["preset"], "overrides": arch["overrides"]},
        "data": {"sources": [{"hr_dir": str(data)}], "patch_size": s.train_patch,
                 "num_workers": s.train_workers},
        "schedule": {"name": "constant"},
        "log": {"every": 1, "tensorboard": False},
        "runtime": {"device": ctx.device.type, "precision": "bf16", "seed": 0,
                    "checkpoint_every": 10**6, "threads": s.threads,
                    "channels_last": True},
    }


def step_times(run_dir: Path) -> list[float]:
    """Wall-clock time of each logged training step (``metrics.jsonl``)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["time"] for r in map(json.loads, lines) if r.get("event") == "train"]


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("event") == "train"]


def steps_per_s(times: list[float], skip: int) -> float | None:
    """Steady steps/s: the steps after the first ``skip`` (warm-up: cuDNN autotuning,
    allocator growth)."""
    times = times[skip:]
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def _train_one(ctx: Context, arch: dict[str, Any], data: Path, run_dir: Path
               ) -> dict[str, Any]:
    """``Trainer.run`` for one architecture: steady steps/s from its metrics log."""
    from attnsr.train.config import load_config
    from attnsr.train.loop import Trainer

    s = ctx.sizes
    cfg = load_config(base=train_values(ctx, arch, data, run_dir, s.train_steps))
    reset_peak(ctx.device)
    start = time.perf_counter()
    trainer = Trainer(cfg, progress=False)
    result = trainer.run()
    rate = steps_per_s(step_times(run_dir), skip=min(5, s.train_steps - 2))
    final = losses(run_dir)[-1]
    return {"precision": trainer.config.runtime.precision, "status": result.status,
            "wall_s": time.perf_counter() - start, "steps_per_s": rate,
            "samples_per_s": rate * s.train_batch if rate else None, "final_loss": final,
            "peak_gib": peak_gib(ctx.device),
            "pass": result.status == "done" and math.isfinite(final)}


def section_train(ctx: Context) -> dict[str, Any]:
    """Steps/s of ``Trainer.run`` (bf16 autocast on CUDA) per bundled architecture."""
    s = ctx.sizes
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_train_") as tmp:
        data = make_folder(Path(tmp) / "images", s.train_images, s.train_image_side)
        for i, arch in enumerate(architectures()[: s.train_archs or None]):
            row: dict[str, Any] = {**arch, "batch": s.train_batch, "patch": s.train_patch,
                                   "steps": s.train_steps}
            if ctx.out_of_time(need=5.0 if ctx.cuda else 0.0):
                row["skipped"] = "time budget"
            else:
                try:
                    row.update(_train_one(ctx, arch, data, Path(tmp) / f"run{i}"))
                except Exception as exc:  # noqa: BLE001 - one architecture failing is a result
                    log.exception("training %s failed", arch["like"])
                    row.update({"error": f"{type(exc).__name__}: {exc}", "pass": False})
            rows.append(row)
    verdicts = [r["pass"] for r in rows if "pass" in r]
    return {"rows": rows, "pass": bool(verdicts) and all(verdicts)}


# --------------------------------------------------------------------------- ddp
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_runs(ctx: Context, group_info: Any) -> dict[str, Any]:
    """The same short run twice, plain and through the trainer's distributed paths
    (``group_info``); their times, losses and exported weights."""
    from safetensors.torch import load_file
    from torch.nn.parallel import DistributedDataParallel

    from attnsr.train import distributed as D
    from attnsr.train.config import load_config
    from attnsr.train.loop import Trainer

    plain_info = D.DistInfo(rank=0, world_size=1, local_rank=0, device=ctx.device)
    arch, steps = architectures()[0], ctx.sizes.ddp_steps
    out: dict[str, Any] = {"arch": arch["like"], "steps": steps}
    with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as tmp:
        data = make_folder(Path(tmp) / "images", ctx.sizes.train_images,
                           ctx.sizes.train_image_side)
        for label, info in (("plain", plain_info), ("ddp", group_info)):
            cfg = load_config(base=train_values(ctx, arch, data, Path(tmp) / label, steps))
            trainer = Trainer(cfg, progress=False, dist_info=info)
            out[f"{label}_wrapped_in_ddp"] = isinstance(trainer.train_model,
                                                        DistributedDataParallel)
            start = time.perf_counter()
            trainer.run()
            sync(ctx.device)
            out[f"{label}_s"] = time.perf_counter() - start
            out[f"{label}_losses"] = losses(Path(tmp) / label)
            out[f"{label}_weights"] = load_file(Path(tmp) / label / "model.safetensors")
    return out


def section_ddp(ctx: Context) -> dict[str, Any]:
    """A one-process NCCL (gloo on the CPU) group; the trainer takes its distributed
    paths (DDP wrapper, loss all-reduce, barriers around checkpoints) as under
    ``torchrun`` and must train exactly as the plain trainer."""
    import torch.distributed as dist

    from attnsr.train import distributed as D

    @dataclass(frozen=True)
    class OneProcessGroup(D.DistInfo):
        """World size 1, yet the distributed code paths (``torchrun`` skips them)."""

        @property
        def distributed(self) -> bool:
            return True

    backend = "nccl" if ctx.cuda else "gloo"
    if ctx.cuda:
        torch.cuda.set_device(ctx.device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}",
                            rank=0, world_size=1)
    try:
        probe = torch.full((4,), 2.0, device=ctx.device)
        dist.all_reduce(probe)
        runs = _ddp_runs(ctx, OneProcessGroup(rank=0, world_size=1, local_rank=0,
                                              device=ctx.device))
    finally:
        dist.destroy_process_group()
    weights, ours = runs.pop("plain_weights"), runs.pop("ddp_weights")
    max_w = max(float((weights[k].float() - ours[k].float()).abs().max()) for k in weights)
    max_l = max(abs(a - b) for a, b in zip(runs["plain_losses"], runs["ddp_losses"],
                                           strict=True))
    return {"backend": backend, "world_size": 1, **runs,
            "all_reduce_ok": bool(torch.all(probe.cpu() == 2.0)),
            "max_loss_diff": max_l, "max_weight_diff": max_w,
            "pass": runs["ddp_wrapped_in_ddp"] and max_l <= 1e-4 and max_w <= 1e-4}


# --------------------------------------------------------------------------- driver
SECTION_FNS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "env": section_env, "parity": section_parity, "precision": section_precision,
    "compile": section_compile, "throughput": section_throughput, "train": section_train,
    "ddp": section_ddp,
}


def run_section(name: str, ctx: Context, todo: list[str]) -> dict[str, Any]:
    """Run one section within its share of the time left; errors are recorded."""
    left = ctx.deadline - time.perf_counter()
    share = SHARES[name] / sum(SHARES[n] for n in todo)
    ctx.section_deadline = time.perf_counter() + left * share
    if left <= 0:
        return {"status": "skipped", "reason": "time budget", "seconds": 0.0}
    log.info("%s: up to %.0f s", name, left * share)
    start = time.perf_counter()
    try:
        result = SECTION_FNS[name](ctx)
        out: dict[str, Any] = {"status": "ok", "result": result}
    except (Exception, OutOfTime) as exc:  # noqa: BLE001 - one section failing is a result
        log.exception("%s failed", name)
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=8)}
    finally:
        if ctx.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    out["seconds"] = round(time.perf_counter() - start, 3)
    log.info("%s: %s in %.1f s", name, out["status"], out["seconds"])
    return out


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Atomic write (a run cut short leaves the previous complete JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str, allow_nan=True) + "\n")
    os.replace(tmp, path)


def summary(sections: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail per section (None: no verdict: skipped, failed, or informational)."""
    out = {}
    for name, sec in sections.items():
        result = sec.get("result") or {}
        out[name] = result.get("pass") if sec["status"] == "ok" else None
    return out


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sections and write the report; returns it."""
    if args.dry_run:
        device, sizes = torch.device("cpu"), DRY_SIZES
    else:
        if not torch.cuda.is_available():
            # Still write what the machine is (env), so a broken GPU setup is diagnosable.
            report = {"schema": SCHEMA, "dry_run": False, "device": "cpu",
                      "error": f"no CUDA device here (torch {torch.__version__}); use "
                               "--dry-run on the CPU",
                      "sections": {"env": run_section("env", Context(
                          torch.device("cpu"), DRY_SIZES, 60.0, False, None), ["env"])}}
            write_json(args.out, report)
            raise SystemExit(f"gpu_check: {report['error']}")
        device, sizes = torch.device(args.device), GPU_SIZES
        if device.type != "cuda":
            raise SystemExit(f"gpu_check: --device {args.device} is not a CUDA device; "
                             "use --dry-run for the CPU")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    threads = torch.get_num_threads()
    if sizes.threads:
        torch.set_num_threads(sizes.threads)
    try:
        return _check(args, device, sizes)
    finally:
        torch.set_num_threads(threads)
        reset_dynamo()  # compiled graphs hold the models


def _check(args: argparse.Namespace, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    ctx = Context(device, sizes, args.budget, args.dry_run, args.models)
    todo = [s for s in SECTIONS if s in args.sections]
    report: dict[str, Any] = {
        "schema": SCHEMA, "dry_run": args.dry_run, "device": str(device),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "budget_s": args.budget, "sizes": asdict(sizes), "sections": {},
    }
    report["hard_limit_s"] = args.budget + args.grace
    with watchdog(args.budget + args.grace):
        for i, name in enumerate(todo):
            report["sections"][name] = run_section(name, ctx, todo[i:])
            report["total_s"] = round(time.perf_counter() - ctx.start, 3)
            report["summary"] = summary(report["sections"])
            write_json(args.out, report)
    return report


# --------------------------------------------------------------------------- markdown
def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _ok(row: dict[str, Any]) -> bool:
    """A row that was measured (not skipped, not failed)."""
    return "skipped" not in row and "error" not in row


def _problems(rows: Any) -> list[str]:
    """Bullet lines for the rows that were skipped or failed."""
    items = rows.items() if isinstance(rows, dict) else (
        (f"{r.get('model', r.get('like', '?'))} {r.get('mode', '')}".strip(), r) for r in rows)
    out = [f"- {name}: {r.get('error') or 'skipped (' + r['skipped'] + ')'}"
           for name, r in items if not _ok(r)]
    return ([""] + out) if out else []


def _result(report: dict[str, Any], name: str) -> dict[str, Any]:
    return (report.get("sections", {}).get(name) or {}).get("result") or {}


def _status_line(report: dict[str, Any], name: str) -> list[str]:
    sec = report.get("sections", {}).get(name)
    if sec is None:
        return ["_not run_", ""]
    if sec["status"] != "ok":
        return [f"_{sec['status']}: {sec.get('error') or sec.get('reason')}_", ""]
    return [f"{sec['seconds']:.1f} s, pass: {_f(sec['result'].get('pass'))}", ""]


def _md_parity(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    models = res.get("models", {})
    rows = [[m, *(_f(r[k]["max_levels"]) for k in ("runner_whole", "upscaler_whole",
                                                   "upscaler_tiled", "runner_whole_no_tf32")),
             _f(r["pass"])] for m, r in models.items() if _ok(r)]
    return (["model", "runner whole", "Upscaler whole", "Upscaler tiled", "runner, TF32 off",
             "<= 1 level"], rows, models)


def _md_precision(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    models = res.get("models", {})
    rows = []
    for m, r in models.items():
        if not _ok(r):
            continue
        cells = [m, r["auto"], _f(r["fp32_ms"], 1)]
        for p in ("bf16", "fp16"):
            q = r[p]
            cells += [f"{_f(q['ms'], 1)} / {_f(q['psnr_vs_fp32'], 1)} / {_f(q['max_levels'])}",
                      f"{q['forced_nonfinite']['fallbacks']}/{q['forced_black']['fallbacks']}"
                      f"/{q['forced_tiled']['fallbacks']}, overflow "
                      f"{q['overflow_input']['fallbacks']}"]
        rows.append(cells + [_f(r["pass"])])
    return (["model", "auto", "fp32 ms", "bf16 ms / dB / max lv", "bf16 fallbacks",
             "fp16 ms / dB / max lv", "fp16 fallbacks", "fallback ok"], rows, models)


def _md_compile(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    models = res.get("models", {})
    rows = [[m, r["precision"], "x".join(map(str, r["lr_hw"])), _f(r["compile_s"], 1),
             _f(r["eager_ms"], 1), _f(r["compiled_ms"], 1), _f(r["speedup"]),
             _f(r["vs_eager_max_levels"])] for m, r in models.items() if _ok(r)]
    return (["model", "precision", "LR", "compile s", "eager ms", "compiled ms", "speed-up",
             "max lv vs eager"], rows, models)


def _md_throughput(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    found = res.get("rows", [])
    rows = [[r["model"], r["mode"], r["precision"], str(r["batch"]), _f(r["fps"], 1),
             _f(r["ms_per_frame"], 1), _f(r.get("peak_gib")), _f(r["realtime_4k"])]
            for r in found if _ok(r)]
    return (["model", "mode", "precision", "batch", "fps", "ms/frame", "peak GiB",
             ">= 60 fps"], rows, found)


def _md_train(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    found = res.get("rows", [])
    rows = [[r["like"], f"x{r['scale']}", str(r["batch"]), str(r["patch"]), r["precision"],
             _f(r["steps_per_s"]), _f(r["samples_per_s"], 0), _f(r.get("peak_gib"))]
            for r in found if _ok(r)]
    return (["architecture of", "scale", "batch", "LR patch", "precision", "steps/s",
             "samples/s", "peak GiB"], rows, found)


def _md_ddp(res: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    rows = [[res["backend"], str(res["steps"]), _f(res["all_reduce_ok"]),
             f"{res['max_loss_diff']:.2e}", f"{res['max_weight_diff']:.2e}",
             _f(res["pass"])]] if res else []
    return (["backend", "steps", "all_reduce", "max loss diff vs plain", "max weight diff",
             "pass"], rows, {})


MARKDOWN = (
    ("parity", "Parity with the CPU (fp32, max difference in levels of 255)", _md_parity),
    ("precision", "bf16 / fp16 vs fp32 on the device, and the fp32 fallback", _md_precision),
    ("compile", "torch.compile on/off (frame input, auto precision)", _md_compile),
    ("throughput", "Throughput to 3840x2160 frames (target 60 fps)", _md_throughput),
    ("train", "Training steps/s (Trainer, bf16 autocast)", _md_train),
    ("ddp", "DDP, one process (NCCL)", _md_ddp),
)


def markdown(report: dict[str, Any]) -> str:
    """The report as the tables of docs/gpu.md (a missing section: an empty table)."""
    env = _result(report, "env")
    gpu = env.get("gpu", {}).get("name", "CPU dry run" if report.get("dry_run") else "-")
    lines = [f"Run: {report.get('started', '-')}, {report.get('device', '-')} ({gpu}), "
             f"torch {env.get('torch', '-')}, CUDA {env.get('cuda', '-')}, total "
             f"{_f(report.get('total_s'), 0)} s.", ""]
    for name, title, render in MARKDOWN:
        header, rows, found = render(_result(report, name))
        lines += [f"### {title}", "", *_status_line(report, name), *_table(header, rows),
                  *_problems(found), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"),
                   help="the JSON report (default gpu_check.json)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny sizes: every code path but the CUDA calls (CI)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--budget", type=float, default=360.0,
                   help="seconds for all sections together (default 360)")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds a section may overrun the budget before it is stopped "
                        "(default 60: with start-up, under 8 minutes in all)")
    p.add_argument("--sections", type=lambda s: s.split(","), default=list(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--models", type=lambda s: s.split(","), default=None,
                   help="comma-separated models (default: every bundled model)")
    p.add_argument("--markdown", type=Path, metavar="JSON",
                   help="print the tables of docs/gpu.md from a report and exit")
    args = p.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {', '.join(sorted(unknown))}; use {','.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown(json.loads(args.markdown.read_text())))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    report = check(args)
    print(json.dumps({"out": str(args.out), "total_s": report.get("total_s"),
                      "summary": report.get("summary")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
