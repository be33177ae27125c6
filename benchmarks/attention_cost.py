"""Cost of each attention block versus feature-map size: time and peak memory.

Every (block, size) pair runs in a fresh subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. Inputs are ``(1, C, S, S)``
float32 with C = 64, under ``torch.inference_mode`` on the CPU. Time is the median of a
few runs after one warm-up run (one run only when a run takes more than a few seconds).

Sizes quadruple the pixel count at each step (64^2 -> 128^2 -> ...), so the table
reports growth *per doubling of pixels* = sqrt(time ratio between successive sizes):
~2 means linear in the number of pixels, ~4 quadratic. A pair whose predicted time
(last time x last step ratio, at least x4) exceeds ``--max-seconds`` (120) is skipped and
listed as such (full non-local attention at 512^2: ~16x its 256^2 time).

    python benchmarks/attention_cost.py                    # all blocks, 64..512
    python benchmarks/attention_cost.py --blocks nonlocal nlsa --sizes 64 128 256
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

CHANNELS = 64


def _swin_pair() -> nn.Module:
    from attnsr.layers.window import SwinTransformerBlock

    class Pair(nn.Module):
        """A regular and a shifted Swin block (window 8, 4 heads), as in SwinIR."""

        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(
                SwinTransformerBlock(CHANNELS, 4, window_size=8, shift_size=s) for s in (0, 4)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            size = (x.shape[2], x.shape[3])
            t = x.flatten(2).transpose(1, 2)
            for blk in self.blocks:
                t = blk(t, size)
            return t.transpose(1, 2).reshape(x.shape)

    return Pair()


def _factories() -> dict[str, tuple[str, Callable[[], nn.Module]]]:
    """name -> (description, constructor); imported lazily in the worker."""
    from attnsr import layers as L

    return {
        "channel": ("channel attention (RCAN CA, r=16)",
                    lambda: L.ChannelAttention(channels=CHANNELS)),
        "cbam": ("CBAM (channel + 7x7 spatial)", lambda: L.CBAM(channels=CHANNELS)),
        "pixel": ("pixel attention (PAN)", lambda: L.PixelAttention(channels=CHANNELS)),
        "esa": ("ESA (RFDN/RLFN)", lambda: L.ESA(channels=CHANNELS)),
        "window": ("Swin blocks W-MSA + SW-MSA (ws 8)", _swin_pair),
        "nonlocal": ("non-local, full, query-chunked",
                     lambda: L.NonLocalAttention(CHANNELS, reduction=2)),
        "nlsa": ("non-local sparse (NLSA, 4 hashes)",
                 lambda: L.NonLocalSparseAttention(CHANNELS, reduction=4)),
    }


def worker(block: str, size: int, runs: int) -> dict[str, float]:
    """Measure one pair in this process; returns times (s) and max RSS (MiB)."""
    torch.manual_seed(0)
    module = _factories()[block][1]().eval()
    x = torch.randn(1, CHANNELS, size, size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    with torch.inference_mode():
        for i in range(runs + 1):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
            if i == 0 and times[0] > 3.0:
                break  # slow pair: the first run is the measurement
    timed = times[1:] or times
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"time_s": statistics.median(timed), "runs": len(timed),
            "base_rss_mib": base, "peak_rss_mib": peak}


def measure(block: str, size: int, runs: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", block, str(size), "--runs", str(runs),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _row(name: str, size: int, r: dict[str, float] | None, growth: str) -> str:
    if r is None:
        return f"{name:<10} {size:>4}^2  {'skipped (predicted > limit)':>40}"
    return (f"{name:<10} {size:>4}^2 {r['time_s'] * 1e3:>11.1f} {growth:>9} "
            f"{r['peak_rss_mib']:>9.0f} {r['peak_rss_mib'] - r['base_rss_mib']:>9.0f}")


def run_all(blocks: list[str], sizes: list[int], runs: int, threads: int,
            max_seconds: float) -> dict[str, dict[int, dict[str, float] | None]]:
    names = _factories()
    print(f"torch {torch.__version__}, {threads} thread(s), C={CHANNELS}, batch 1, float32, CPU")
    print(f"{'block':<10} {'size':>6} {'time ms':>11} {'x per 2x':>9} {'peak MiB':>9} "
          f"{'+MiB':>9}")
    results: dict[str, dict[int, dict[str, float] | None]] = {}
    for block in blocks:
        results[block], prev, ratio, last_size = {}, None, 4.0, sizes[0]
        for size in sizes:
            if prev is not None and prev["time_s"] * ratio > max_seconds:
                results[block][size] = None
                print(_row(block, size, None, ""))
                continue
            r = measure(block, size, runs, threads)
            growth = ""
            if prev is not None:
                step = r["time_s"] / prev["time_s"]
                ratio = max(step, (size / last_size) ** 2)
                growth = f"{math.sqrt(step):.2f}"
            results[block][size], prev, last_size = r, r, size
            print(_row(block, size, r, growth), flush=True)
        print(f"  ({names[block][0]})")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", nargs="+", default=list(_factories()))
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--worker", nargs=2, metavar=("BLOCK", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.runs)))
        return
    results = run_all(args.blocks, args.sizes, args.runs, args.threads, args.max_seconds)
    nl = results.get("nonlocal", {}).get(256)
    if nl is not None:
        verdict = "within" if nl["peak_rss_mib"] <= 4096 else "ABOVE"
        print(f"non-local at 256x256: peak RSS {nl['peak_rss_mib']:.0f} MiB, {verdict} 4 GiB "
              f"(a full 65536 x 65536 float32 matrix alone is 16 GiB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
