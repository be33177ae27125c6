"""Training throughput: samples/second of the data pipeline alone and of full training
steps (forward + backward + Adam + EMA) for a lightweight model, on CPU and on GPU when
there is one, printed side by side; then the samples/s of making one training sample
(``PatchBatches.sample``, one thread) with the LR cropped from the cached bicubic LR, made
by MATLAB bicubic per patch, and made by the default real-world degradation
(``DegradationConfig(enabled=True)``: blur, resize, noise, JPEG, first and second order).

    python benchmarks/train_throughput.py [--data DIR] [--model pan] [--scale 4]
        [--patch 48] [--batch 16] [--steps 20] [--threads 0] [--samples 200]

Without ``--data`` it trains on generated images (the data numbers then measure patch
cropping from memory, not decoding: images are decoded once before training anyway).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnsr.data.degrade import DegradationConfig
from attnsr.train.config import load_config
from attnsr.train.data import PatchBatches
from attnsr.train.loop import Trainer


def _generated_images(folder: Path, n: int = 16, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.random((size // 8, size // 8, 3))
        img = np.kron(coarse, np.ones((8, 8, 1))) * 0.85 + rng.random((size, size, 3)) * 0.15
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _trainer(args: argparse.Namespace, data: Path, run: Path, device: str) -> Trainer:
    values = {
        "scale": args.scale, "total_iters": 10**9, "batch_size": args.batch,
        "run_dir": str(run), "model": {"name": args.model},
        "data": {"sources": [{"hr_dir": str(data)}], "patch_size": args.patch,
                 "skip_small": True},
        "log": {"tensorboard": False, "jsonl": False},
        "runtime": {"device": device, "threads": args.threads,
                    "precision": "bf16" if device == "cuda" else "fp32"},
    }
    return Trainer(load_config(base=values), progress=False)


def _data_rate(trainer: Trainer, steps: int) -> float:
    """Samples/s of making batches (crop, augment, to tensor)."""
    start = time.perf_counter()
    for i in range(steps):
        trainer.dataset[i]
    return steps * trainer.config.batch_size / (time.perf_counter() - start)


def _step_rate(trainer: Trainer, steps: int) -> float:
    """Samples/s of full training steps (batches made in the loop, as in training)."""
    def sync() -> None:
        if trainer.dist.device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(2):  # warm-up (allocator, cuDNN autotune)
        trainer.train_step(i, *trainer.dataset[i])
    sync()
    start = time.perf_counter()
    for i in range(2, 2 + steps):
        trainer.train_step(i, *trainer.dataset[i])
    sync()
    return steps * trainer.config.batch_size / (time.perf_counter() - start)


def _sample_rates(trainer: Trainer, n: int) -> dict[str, float]:
    """Samples/s of ``PatchBatches.sample`` on one thread: cached bicubic LR, bicubic LR
    made per patch, and the default real-world degradation (same images, crops, seeds)."""
    ds = trainer.dataset
    uncached = [[dataclasses.replace(im, lr=None) for im in src] for src in ds.sources]
    kw = {"scale": ds.scale, "patch_size": ds.patch, "batch_size": 1, "seed": ds.seed}
    variants = {
        "bicubic (cached LR)": PatchBatches(ds.sources, list(ds.probs), **kw),
        "bicubic (per patch)": PatchBatches(uncached, list(ds.probs), **kw),
        "degraded (default)": PatchBatches(uncached, list(ds.probs), **kw,
                                           degradation=DegradationConfig(enabled=True)),
    }
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for name, batches in variants.items():
            batches.sample(0, 0)  # warm-up (kernel tables, torch dispatch)
            start = time.perf_counter()
            for i in range(n):
                batches.sample(1 + i, 0)
            rates[name] = n / (time.perf_counter() - start)
        return rates
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder of HR training images")
    parser.add_argument("--model", default="pan")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48, help="LR patch side")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    parser.add_argument("--samples", type=int, default=200,
                        help="samples per variant for the one-thread sample rates")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or _generated_images(Path(tmp) / "images")
        rows = []
        for device in devices:
            trainer = _trainer(args, data, Path(tmp) / f"run_{device}", device)
            rows.append((device, _data_rate(trainer, args.steps),
                         _step_rate(trainer, args.steps)))
            if device == "cpu":
                sample_rates = _sample_rates(trainer, args.samples)
    print(f"model {args.model} x{args.scale}, LR patch {args.patch}, batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'device':<8}{'data only (samples/s)':>24}{'train step (samples/s)':>26}"
          f"{'steps/s':>10}")
    for device, data_rate, step_rate in rows:
        print(f"{device:<8}{data_rate:>24.1f}{step_rate:>26.1f}{step_rate / args.batch:>10.2f}")
    print(f"\none sample (HR patch {args.patch * args.scale} px), one thread, "
          f"{args.samples} samples each")
    print(f"{'LR made by':<24}{'samples/s':>12}{'ms/sample':>12}")
    for name, rate in sample_rates.items():
        print(f"{name:<24}{rate:>12.1f}{1000 / rate:>12.2f}")


if __name__ == "__main__":
    main()
