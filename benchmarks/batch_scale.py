"""Throughput of ``attnsr upscale --engine ray`` with 1 and 2 CPU workers against the
local command, in one run, on the same images, and Ray's overhead per image.

``--images`` PNGs of ``--size`` (textured noise, made here) are upscaled by:

* ``local``: ``attnsr upscale`` in a subprocess (``--threads`` as given: by default one
  thread, as one Ray worker has), timed end to end (Python start and model load
  included); its per-file log lines give the time inside each file;
* ``ray N``: :func:`attnsr.batch.upscale_dataset` with N actors of one CPU each on a local
  Ray started once (``ray.init`` time reported apart), timed end to end (actor start and
  model load included); the manifest gives the time inside each file.

Per engine: images/s end to end, the median time inside a file (read, upscale, write),
and the time per image outside the files' own work (wall minus file time over workers:
start-up, model load, scheduling, transfers). Ray's overhead per image is the outside
time of one worker minus the local command's. Outputs of every engine are compared
with the local ones byte for byte.

    OMP_NUM_THREADS=1 python benchmarks/batch_scale.py --images 48 --size 96 \
        --model attnsr-x2 --json /tmp/batch_scale.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, size: int) -> None:
    """``n`` RGB PNGs of ``size`` x ``size`` smoothed noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        x = rng.random((size // 4, size // 4, 3))
        img = Image.fromarray((x * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        img.save(folder / f"im{i:03d}.png")


def _row(engine: str, wall: float, per_file: list[float], workers: int) -> dict[str, Any]:
    """Timings of one engine: end to end, and per file inside the per-file function
    (read, upscale, write); ``outside`` = per image, what the wall time holds beyond the
    files' own work (start-up, model load, scheduling, transfers)."""
    n = len(per_file)
    return {"engine": engine, "images": n, "wall_s": wall, "images_per_s": n / wall,
            "file_ms_median": 1e3 * float(np.median(per_file)),
            "outside_ms_per_image": 1e3 * (wall - sum(per_file) / workers) / n}


def run_local(src: Path, dst: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "attnsr", "upscale", str(src), "-o", str(dst), "--model",
           args.model, "--tile", str(args.tile), "--device", "cpu", "--no-progress",
           "--threads", str(args.threads)]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    per_file = [float(s) for s in re.findall(r"MP in ([0-9.]+) s\)", out)]
    return _row("local", wall, per_file, 1)


def run_ray(src: Path, dst: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    from attnsr.batch import upscale_dataset

    tile = args.tile if args.tile == "auto" else int(args.tile)
    start = time.perf_counter()
    report = upscale_dataset([str(src)], dst, model=args.model, tile=tile, device="cpu",
                             workers=workers, threads=1)
    wall = time.perf_counter() - start
    per_file = [r.seconds for r in report.results if r.status == "done"]
    return _row(f"ray {workers}", wall, per_file, workers)


def same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.png"))
    return names == sorted(p.name for p in b.glob("*.png")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=96, help="LR side in pixels")
    ap.add_argument("--model", default="attnsr-x2")
    ap.add_argument("--tile", default="0", help="0: whole image (small inputs)")
    ap.add_argument("--threads", type=int, default=1, help="local command's threads")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--workdir", type=Path, help="keep inputs and outputs here (empty "
                    "folder; default: a temporary one)")
    args = ap.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory(prefix="batch-scale-") as scratch:
        tmp = args.workdir or scratch
        src = Path(tmp) / "in"
        make_images(src, args.images, args.size)
        rows.append(run_local(src, Path(tmp) / "local", args))
        t0 = time.perf_counter()
        ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        for w in args.workers:
            rows.append(run_ray(src, Path(tmp) / f"ray{w}", w, args))
            rows[-1]["identical_to_local"] = same_bytes(Path(tmp) / "local",
                                                        Path(tmp) / f"ray{w}")
        ray.shutdown()
    local = rows[0]
    one = next((r for r in rows if r["engine"] == "ray 1"), None)
    overhead = one["outside_ms_per_image"] - local["outside_ms_per_image"] if one else None
    print(f"{args.images} images {args.size}x{args.size}, {args.model}, tile {args.tile}; "
          f"ray.init {init_s:.1f} s (not in the rows)")
    print(f"{'engine':<8} {'wall s':>7} {'img/s':>6} {'vs local':>9} {'file ms':>8} "
          f"{'outside ms/img':>15}")
    for r in rows:
        print(f"{r['engine']:<8} {r['wall_s']:7.1f} {r['images_per_s']:6.2f} "
              f"{r['images_per_s'] / local['images_per_s']:8.2f}x {r['file_ms_median']:8.0f} "
              f"{r['outside_ms_per_image']:15.0f}"
              + ("" if r.get("identical_to_local", True) else "  OUTPUTS DIFFER"))
    if overhead is not None:
        print(f"Ray overhead per image (1 worker, outside time minus local's): "
              f"{overhead:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ray_init_s": init_s,
                                         "ray_overhead_ms_per_image": overhead,
                                         "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
