"""``--backend auto`` on the CPU: torch or onnxruntime, whichever is faster here.

Which one wins depends on the CPU, the thread count and the model (measured on this
project's 2-core EPYC: onnxruntime 10-30 % faster for ``attnsr_lite`` with 2 threads on a
loaded machine, torch NHWC slightly faster with 1 thread on an idle one), so it is
measured, once per model and machine: both backends run the LR inputs of
:data:`PROBE_SIZES` (a 256 px tile and a small odd-sized image, the same for every
install and image, so the choice does not depend on the first image; a record made with
other sizes is measured again), interleaved, best of :data:`PROBE_ROUNDS`, after one
warm-up each and with an untimed run before each timed one (the other backend's thread
pool has just run). The result is cached as JSON under the user cache dir
(``$ATTNSR_CACHE/backend``, default ``~/.cache/attnsr/backend``) keyed by
:func:`choice_key`: the exported graph's fingerprint (weights, config, opset, torch,
onnx, onnxruntime and attnsr versions), the thread count and the CPU model; any change
gives a new key and a new measurement. The exported graph itself is cached the same way
(:func:`attnsr.export.runtime.onnx_runner`).

The two backends' outputs agree to within one 8-bit level (tested), so the choice
changes speed only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from pathlib import Path

import torch

from attnsr.fs import atomic_write
from attnsr.runner import Runner

log = logging.getLogger(__name__)

# Two inputs, times summed: a 256 px tile (the size class photos are cut into) and a small
# odd-sized image (thumbnails, benchmark sets). One 128 px square chose onnxruntime for the
# 32-channel x4, which then ran Set5 at half torch's speed (2.9-3.4 against 6.2-6.8 MP/s).
PROBE_SIZES = ((256, 256), (72, 96))
PROBE_KEY = "+".join(f"{h}x{w}" for h, w in PROBE_SIZES)  # recorded with each choice
PROBE_ROUNDS = 5
# onnxruntime must be this much faster to be chosen (ties: torch). On a shared VM two
# probes of the same model moved by 10-25 %; the interleaved benchmark
# (benchmarks/upscale_speed.py compare) had torch ahead for attnsr_net on both workloads
MARGIN = 0.15


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choice_key(runner: Runner, threads: int) -> str:
    """Cache key of the backend choice for the torch ``runner`` at ``threads``."""
    from attnsr.export.onnx import DEFAULT_OPSET
    from attnsr.export.runtime import fingerprint

    text = f"{fingerprint(runner, DEFAULT_OPSET)}|{threads}|{cpu_model()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def choice_path(runner: Runner, threads: int) -> Path:
    from attnsr.export.runtime import cache_dir

    name = runner.name.replace("/", "_").replace("\\", "_")
    return cache_dir().parent / "backend" / f"{name}-{choice_key(runner, threads)}.json"


def _best_of(runners: dict[str, Runner], lr: torch.Tensor, rounds: int) -> dict[str, float]:
    """Best seconds per runner on ``lr``, interleaved so that load hits both alike."""
    best = dict.fromkeys(runners, float("inf"))
    for r in runners.values():
        r(lr)  # warm-up: oneDNN primitives, onnxruntime's memory plan
    for _ in range(rounds):
        for name, r in runners.items():
            r(lr)  # untimed: wakes this backend's thread pool after the other one's run
            start = time.perf_counter()
            r(lr)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(torch_runner: Runner, ort_runner: Runner, *,
            sizes: tuple[tuple[int, int], ...] = PROBE_SIZES,
            rounds: int = PROBE_ROUNDS) -> dict[str, float]:
    """Seconds for one LR image of each of ``sizes`` per backend (best of ``rounds`` per
    size, summed)."""
    m = max(torch_runner.multiple_of, 1)
    gen = torch.Generator().manual_seed(0)
    total = {"torch": 0.0, "onnxruntime": 0.0}
    for h, w in sizes:
        lr = torch.rand(1, torch_runner.in_channels, max(h // m * m, m), max(w // m * m, m),
                        generator=gen)
        for name, sec in _best_of({"torch": torch_runner, "onnxruntime": ort_runner}, lr,
                                  rounds).items():
            total[name] += sec
    return total


def choose_backend(runner: Runner, *, threads: int) -> tuple[str, Runner | None]:
    """``("torch", None)`` or ``("onnxruntime", its runner)`` for the torch CPU ``runner``:
    the cached choice, else measured now (and cached)."""
    from attnsr.export.runtime import onnx_runner

    path = choice_path(runner, threads)
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            choice = record["backend"] if record.get("probe") == PROBE_KEY else None
        except (OSError, ValueError, KeyError, AttributeError):
            choice = None
        if choice == "torch":
            return "torch", None
        if choice == "onnxruntime":
            return "onnxruntime", onnx_runner(runner, threads=threads)
    try:
        ort = onnx_runner(runner, threads=threads)
        secs = measure(runner, ort)
    except Exception as exc:  # noqa: BLE001 - an export that fails leaves torch, remembered
        log.warning("%s: onnxruntime unavailable for it (%s); using torch",
                    runner.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        ort, secs = None, {"torch": 0.0, "onnxruntime": float("inf")}
    choice = "onnxruntime" if secs["onnxruntime"] < (1.0 - MARGIN) * secs["torch"] else "torch"
    timed = {k: (v if v != float("inf") else None) for k, v in secs.items()}
    record = {"backend": choice, "seconds": timed, "probe": PROBE_KEY, "threads": threads,
              "cpu": cpu_model(), "model": runner.name}
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    except OSError as exc:  # a read-only cache only costs a measurement next time
        log.debug("backend choice not cached: %s", exc)
    log.info("%s: %s chosen (torch %.0f ms, onnxruntime %.0f ms for %s px, %d threads)",
             runner.name, choice, secs["torch"] * 1e3, secs["onnxruntime"] * 1e3,
             PROBE_KEY, threads)
    return choice, (ort if choice == "onnxruntime" else None)
