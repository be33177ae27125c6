"""Speed of attnsr's MATLAB-exact imresize against Pillow's bicubic resize.

Downscales a generated 2040x1356 RGB image (a DIV2K-sized frame) by 4 with each path and
prints the best-of-N wall time and the ratio to Pillow::

    python benchmarks/resize_speed.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from attnsr.data.resize import contributions, imresize

WIDTH, HEIGHT, SCALE = 2040, 1356, 4


def make_image() -> np.ndarray:
    """A smooth-plus-noise uint8 ``(1356, 2040, 3)`` image (deterministic)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / 37.0
    base = 127 + 80 * np.sin(x) * np.cos(0.7 * y)
    img = np.stack([base, base[::-1], base[:, ::-1]], axis=2) + rng.normal(0, 12, (HEIGHT,
                                                                                  WIDTH, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds over ``repeats`` calls (after a warm-up).

    CPU time is less sensitive to other load on a shared machine (it sums torch threads)."""
    fn()  # warm-up (weight tables, allocator)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    img = make_image()
    pil = Image.fromarray(img)
    out_size = (WIDTH // SCALE, HEIGHT // SCALE)
    as_float = img.astype(np.float64) / 255.0
    tensor = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    cases: dict[str, Callable[[], object]] = {
        "Pillow Image.resize(BICUBIC)": lambda: pil.resize(out_size, Image.Resampling.BICUBIC),
        "imresize numpy uint8 (MATLAB path)": lambda: imresize(img, 1 / SCALE),
        "imresize numpy float64": lambda: imresize(as_float, 1 / SCALE),
        "imresize torch float32 (1,3,H,W)": lambda: imresize(tensor, 1 / SCALE),
    }
    print(f"downscale {WIDTH}x{HEIGHT} RGB by {SCALE} -> {out_size[0]}x{out_size[1]}; "
          f"best of {args.repeats}; torch threads {torch.get_num_threads()}")
    print(f"  {'':<38} {'wall':>9} {'ratio':>7} {'cpu':>9} {'ratio':>7}")
    base: tuple[float, float] | None = None
    for name, fn in cases.items():
        wall, cpu = best_time(fn, args.repeats)
        base = base or (wall, cpu)
        print(f"  {name:<38} {wall * 1e3:6.1f} ms {wall / base[0]:6.2f}x {cpu * 1e3:6.1f} ms "
              f"{cpu / base[1]:6.2f}x")
    contributions.cache_clear()


if __name__ == "__main__":
    main()
