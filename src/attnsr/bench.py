"""The benchmark engine behind ``attnsr bench``: speed, size and memory of models.

For each model: parameters; multiply-accumulates (MACs) for a 1280x720 output (the
basis of published "Multi-Adds") and for the benchmarked input; the median latency of
``runs`` forward passes after ``warmup`` passes on one ``(1, 3, h, w)`` LR input (the
whole image, no tiling); output megapixels per second; and peak memory:

- CPU: the growth of the process's peak resident set (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the timed passes) over its resident set at that
  moment, i.e. what running the model costs on top of holding it. Each model runs in
  its own Python subprocess (``isolate=True``), so allocator caches left by the
  previous model do not hide memory.
- CUDA: ``torch.cuda.max_memory_allocated`` over the memory allocated before the runs.

Every model is resolved and run exactly as ``attnsr upscale`` runs it: through
:func:`attnsr.resolver.resolve` and the :class:`~attnsr.runner.Runner` contract (pad ->
run -> clamp -> crop, NHWC on CPU, autocast for ``bf16``/``fp16``), with the ``torch``
backend or ``onnxruntime`` (CPU, fp32; exported on the fly, for the benchmarked size only
when the model cannot be exported for any size). Presets without weights need
``random_weights=True`` (speed does not depend on the weights). Bicubic is always
measured in the same run as the floor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnsr import resolver
from attnsr.errors import ConfigError
from attnsr.export.wrapper import static_only_reason
from attnsr.runner import Runner

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LIGHT_PARAMS = 2_000_000  # presets under this many parameters (at x4) run by default
FLOOR = "bicubic"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """How to benchmark. ``size`` is the LR input ``(h, w)``; ``isolate`` runs every
    model in a fresh subprocess (needed for honest CPU memory numbers)."""

    backend: str = "torch"
    precision: str = "fp32"
    device: str = "cpu"
    size: tuple[int, int] = (256, 256)
    scale: int = 4
    runs: int = 10
    warmup: int = 2
    threads: int | None = None
    isolate: bool = True
    random_weights: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: use {' or '.join(BACKENDS)}")
        if self.precision not in DTYPES:
            raise ConfigError(f"precision {self.precision!r}: use fp32, bf16 or fp16")
        if self.backend == "onnxruntime" and (self.precision, self.device) != ("fp32", "cpu"):
            raise ConfigError("the onnxruntime backend runs fp32 on the CPU only")
        if min(self.size) < 1 or self.runs < 1 or self.warmup < 0 or self.scale < 1:
            raise ConfigError("size, runs and scale must be positive and warmup >= 0")


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """One model's numbers (``error`` set, numbers 0, when it could not run)."""

    model: str
    params: int = 0
    macs_720p: int = 0
    macs_input: int = 0
    latency_ms: float = 0.0
    latency_min_ms: float = 0.0
    peak_memory_mib: float = 0.0
    output_mpix_per_s: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- models
def preset_params(name: str, scale: int = 4) -> int:
    """Parameter count of preset ``name``, built on the meta device (no memory)."""
    from attnsr.models.registry import create_model

    with torch.device("meta"):
        model = create_model(name, scale=scale)
    return sum(p.numel() for p in model.parameters())


def default_models(scale: int = 4) -> list[str]:
    """The lightweight presets (fewer than :data:`LIGHT_PARAMS` parameters) + bicubic."""
    from attnsr.models.registry import get_preset, list_models

    names = [n for n in list_models() if scale in get_preset(n).scales]
    return [n for n in names if n == FLOOR or preset_params(n, scale) < LIGHT_PARAMS]


def load_model(name: str, cfg: BenchConfig) -> Runner:
    """The runner of ``name`` as ``attnsr upscale`` would run it (see the module doc)."""
    if cfg.backend != "onnxruntime":
        return resolver.resolve(name, scale=cfg.scale, device=cfg.device,
                                precision=cfg.precision, pretrained=not cfg.random_weights)
    runner = resolver.resolve(name, scale=cfg.scale, backend="torch",
                              pretrained=not cfg.random_weights)
    if static_only_reason(runner.model) is None:
        return resolver.resolve(runner, backend="onnxruntime", threads=cfg.threads)
    from attnsr.export.onnx import export_onnx
    from attnsr.export.runtime import load_onnx

    with tempfile.TemporaryDirectory(prefix="attnsr-bench-") as tmp:
        path = export_onnx(runner, Path(tmp) / "model.onnx", static_size=cfg.size)
        return load_onnx(path, threads=cfg.threads)  # the session holds the whole graph


def count_macs(runner: Runner, size: tuple[int, int]) -> tuple[int, int]:
    """MACs for a 1280x720 output and for an LR input of ``size`` (0 for a
    parameter-free resize, whose cost is not counted in MACs)."""
    from attnsr.models.flops import count_flops, paper_lr_size

    if runner.num_params == 0:
        return 0, 0
    return (count_flops(runner.model, paper_lr_size(runner.scale)),
            count_flops(runner.model, size))


# --------------------------------------------------------------------------- running
def make_step(runner: Runner, cfg: BenchConfig) -> Callable[[], Any]:
    """One timed call: the runner on a fixed random ``(1, C, h, w)`` input."""
    device = runner.device
    lr = torch.rand(1, runner.in_channels, *cfg.size, generator=torch.Generator().manual_seed(0))
    lr = lr.to(device)

    def step() -> Any:
        out = runner(lr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return step


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def time_runs(step: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """Seconds of ``runs`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _measure(step: Callable[[], Any], cfg: BenchConfig) -> tuple[list[float], float]:
    """(run times, peak memory MiB) of ``step``, memory as in the module docstring."""
    cuda = torch.device(cfg.device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_bytes()
        if not _reset_peak_rss():
            log.warning("cannot reset the peak RSS; memory numbers include loading")
    times = time_runs(step, cfg.runs, cfg.warmup)
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
    return times, max(peak - base, 0) / 2**20


def bench_one(name: str, cfg: BenchConfig) -> BenchResult:
    """Benchmark model ``name`` in this process (errors become ``error``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        runner = load_model(name, cfg)
        counted = runner if runner.backend == "torch" else resolver.resolve(
            name, scale=cfg.scale, backend="torch", pretrained=not cfg.random_weights)
        params = counted.num_params  # an ONNX graph: counted on the model it came from
        macs_720p, macs_input = count_macs(counted, cfg.size)
        times, mem = _measure(make_step(runner, cfg), cfg)
    except Exception as exc:  # noqa: BLE001 - one failing model must not stop the table
        log.debug("bench %s failed", name, exc_info=True)
        return BenchResult(model=name, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    median = statistics.median(times)
    out_px = cfg.size[0] * cfg.size[1] * cfg.scale**2
    return BenchResult(
        model=name, params=params, macs_720p=macs_720p, macs_input=macs_input,
        latency_ms=1e3 * median, latency_min_ms=1e3 * min(times), peak_memory_mib=mem,
        output_mpix_per_s=out_px / 1e6 / median,
    )


def _bench_subprocess(name: str, cfg: BenchConfig) -> BenchResult:
    """:func:`bench_one` in a fresh interpreter (``python -m attnsr.bench``)."""
    payload = json.dumps({"name": name, "config": dataclasses.asdict(cfg)})
    proc = subprocess.run([sys.executable, "-m", "attnsr.bench", payload],
                          capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return BenchResult(model=name, error=f"subprocess failed ({proc.returncode}): {tail}")
    return BenchResult(**json.loads(lines[-1]))


def bench(
    models: Sequence[str] | None, cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Benchmark ``models`` (None: :func:`default_models`); bicubic is always included
    (first) as the floor."""
    names = list(models) if models else default_models(cfg.scale)
    names = [FLOOR] + [n for n in dict.fromkeys(names) if n != FLOOR]
    results = []
    for name in names:
        if progress is not None:
            progress(name)
        run = _bench_subprocess if cfg.isolate else bench_one
        results.append(run(name, cfg))
    return results


# --------------------------------------------------------------------------- report
def environment(cfg: BenchConfig) -> dict[str, Any]:
    """Versions and hardware that the numbers depend on."""
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
           "torch_threads": cfg.threads or torch.get_num_threads()}
    if cfg.backend == "onnxruntime":
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    if torch.device(cfg.device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(cfg.device))
    return env


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(results: Sequence[BenchResult], cfg: BenchConfig) -> dict[str, Any]:
    """JSON-ready report: the config, the environment and one entry per model."""
    return {"config": dataclasses.asdict(cfg), "environment": environment(cfg),
            "results": [r.to_dict() for r in results]}


def to_markdown(data: dict[str, Any]) -> str:
    """A Markdown table of a :func:`report` (what ``docs/deployment.md`` shows)."""
    cfg, env = data["config"], data["environment"]
    h, w = cfg["size"]
    lines = [f"x{cfg['scale']}, LR {h}x{w} -> {h * cfg['scale']}x{w * cfg['scale']}, "
             f"{cfg['backend']} {cfg['precision']} on {cfg['device']} ({env['cpu']}, "
             f"{env['torch_threads']} thread(s)), median of {cfg['runs']} runs after "
             f"{cfg['warmup']} warm-up", "",
             "| model | params | GMACs (720p out) | GMACs (this input) | median ms | "
             "peak MiB | out MP/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["results"]:
        if r["error"]:
            lines.append(f"| {r['model']} | {r['params'] / 1e6:.3f}M | | | failed: "
                         f"{r['error']} | | |")
            continue
        g = [f"{m / 1e9:.1f}" if m else "-" for m in (r["macs_720p"], r["macs_input"])]
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.3f}M | {g[0]} | {g[1]} | "
                     f"{r['latency_ms']:,.0f} | {r['peak_memory_mib']:,.0f} | "
                     f"{r['output_mpix_per_s']:.3f} |")
    return "\n".join(lines) + "\n"


def _worker(argv: Sequence[str]) -> int:
    """Subprocess entry: ``python -m attnsr.bench '{"name": ..., "config": {...}}'``;
    prints one JSON line with the :class:`BenchResult`."""
    payload = json.loads(argv[0])
    values = {**payload["config"], "size": tuple(payload["config"]["size"]), "isolate": False}
    result = bench_one(payload["name"], BenchConfig(**values))
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
