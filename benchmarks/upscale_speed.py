"""Upscaling speed of the zoo models and peak memory of ``--tile auto`` at large sizes.

``speed``: for each registered model (random weights, x4, CPU, fp32) one 256x256 input
is upscaled (a) by a plain whole-image forward (``ModelDescriptor.__call__``), (b) by
the upscale path (``Upscaler.upscale_hwc`` into a uint8 array) with ``tile="auto"``
(one tile at this size: the cost of the pipeline itself) and (c) with tiles of half
the image and the default overlap (3x3 tiles: ``work`` = the pixels run / image
pixels, the cost of tiling). Reported: output megapixels per second and time ratios to
(a). Models in ``HEAVY`` run at 64x64 only. Each timing is the best of ``--repeat``
runs after a warm-up on a small input.

``memory``: for input sizes of 1, 4, 12 (4000x3000) and 16 MP one subprocess per size
reads a PNG, upscales it x4 with ``tile="auto"`` and writes the PNG, as
``attnsr upscale`` does; its peak resident memory (``ru_maxrss``) is read right after
upscaling and again after writing. The default model is PAN with its tiny test
configuration (random weights): with ``tile="auto"`` the tile activations are sized to
the same budget whatever the model, so the peak is the model-independent part (image
buffers, strip accumulator) plus at most the budget; the tiny model only makes a
192-megapixel run finish in minutes on a CPU. ``--model pan --full`` uses the real one;
a name that is not a registered architecture (bundled weights such as ``attnsr-x4``, the
``attnsr upscale`` default, or a checkpoint path) is loaded as ``attnsr upscale`` does.

    python benchmarks/upscale_speed.py speed
    python benchmarks/upscale_speed.py memory --mp 1 4 12 16
    python benchmarks/upscale_speed.py memory --mp 12 --model attnsr-x4 --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HEAVY = {"rcan", "swinir", "nlsn", "attnsr_base"}
GIB = 1024**3


# --------------------------------------------------------------------------- speed
def _best_time(fn: Any, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def speed_row(name: str, size: int, scale: int, repeat: int) -> dict[str, Any]:
    """MP/s of model ``name`` on a ``size``x``size`` input: whole-image forward, the
    upscale path with ``tile="auto"`` and with tiles of half the image."""
    from attnsr.descriptor import describe
    from attnsr.inference.tiling import default_overlap, plan_tiles
    from attnsr.inference.upscale import Upscaler
    from attnsr.models.registry import create_model, list_models
    from attnsr.resolver import resolve

    torch.manual_seed(0)
    if name in list_models():  # a registered preset: random weights
        desc = describe(create_model(name, scale=scale), name=name)
    else:  # bundled weights (attnsr-x4) or a checkpoint
        desc = resolve(name, scale=scale)
    m = desc.multiple_of
    size = max(size // m * m, m)
    lr = torch.rand(1, 3, size, size)
    pixels = lr[0].permute(1, 2, 0).numpy().copy()
    auto = Upscaler(desc, tile="auto", device="cpu", precision="fp32")
    half_tile = max(size // 2 // m * m, m)  # overlap given: tiles of exactly half the image
    half = Upscaler(desc, tile=half_tile, overlap=default_overlap(desc, half_tile),
                    device="cpu", precision="fp32")
    desc(torch.rand(1, 3, max(2 * m, 16), max(2 * m, 16)))  # warm-up
    auto.tile_size(size, size)  # the memory probe is a one-off per model
    mp = (size * scale) ** 2 / 1e6
    t_whole = _best_time(lambda: desc(lr), repeat)
    t_auto = _best_time(lambda: auto.upscale_hwc(pixels), repeat)
    t_half = _best_time(lambda: half.upscale_hwc(pixels), repeat)
    tile = half.tile_size(size, size)
    plan = plan_tiles(size, size, tile, half._planes(lr, None, tile)[0].overlap, multiple=m)
    return {"model": name, "size": size, "auto_tile": auto.tile_size(size, size),
            "tile": tile, "tiles": plan.num_tiles,
            "work": plan.num_tiles * plan.tile_h * plan.tile_w / size**2,
            "whole_mp_s": mp / t_whole, "auto_mp_s": mp / t_auto, "tiled_mp_s": mp / t_half,
            "auto_over_whole": t_auto / t_whole, "tiled_over_whole": t_half / t_whole}


HEADER = (f"{'model':14s} {'size':>4s} {'whole':>7s} {'auto':>7s} {'tiled':>7s} "
          f"{'auto/whole':>10s} {'tiled/whole':>11s} {'tiles':>5s} {'work':>5s}")


def run_speed(args: argparse.Namespace) -> None:
    from attnsr.models.registry import list_models

    torch.set_num_threads(args.threads) if args.threads else None
    names = args.models or list_models()
    print("output MP/s, x4, CPU fp32; auto: tile='auto' (one tile at this size); tiled: "
          "tiles of half the image, default overlap; work = tiled pixels / image pixels")
    print(HEADER)
    rows = []
    for name in names:
        size = 64 if name in HEAVY else args.size
        r = speed_row(name, size, args.scale, args.repeat)
        rows.append(r)
        print(f"{name:14s} {r['size']:4d} {r['whole_mp_s']:7.3f} {r['auto_mp_s']:7.3f} "
              f"{r['tiled_mp_s']:7.3f} {r['auto_over_whole']:10.2f} "
              f"{r['tiled_over_whole']:11.2f} {r['tiles']:5d} {r['work']:5.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


# --------------------------------------------------------------------------- memory
def _make_input(path: Path, megapixels: float) -> tuple[int, int]:
    """A smooth synthetic RGB PNG of about ``megapixels`` (4:3); 12 MP is 4000x3000."""
    from PIL import Image

    w = int(round(math.sqrt(megapixels * 1e6 * 4 / 3) / 4)) * 4
    h = int(round(w * 3 / 4))
    yy = np.linspace(0, 8 * np.pi, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 6 * np.pi, w, dtype=np.float32)[None, :]
    rgb = np.stack([np.sin(yy) * np.cos(xx), np.sin(yy + xx), np.cos(yy - 2 * xx)], axis=2)
    Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)).save(path, compress_level=1)
    return w, h


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: read -> upscale (tile auto) -> write."""
    from attnsr.data.io import read_image
    from attnsr.descriptor import describe
    from attnsr.inference.upscale import Upscaler, save_like
    from attnsr.models.registry import create_model, get_preset, list_models
    from attnsr.resolver import resolve

    torch.set_num_threads(args.threads) if args.threads else None
    if args.model in list_models():
        overrides = {} if args.full else getattr(
            importlib.import_module(f"attnsr.models.{get_preset(args.model).arch}"), "TINY", {})
        desc = describe(create_model(args.model, scale=args.scale, **overrides),
                        name=args.model)
    else:  # bundled weights or a checkpoint, as ``attnsr upscale --model``
        desc = resolve(args.model, scale=args.scale)
    up = Upscaler(desc, tile="auto", device="cpu", precision="fp32")
    base = _rss_gib()
    start = time.perf_counter()
    img = read_image(args.input, max_pixels=0)
    tile = up.tile_size(img.height, img.width)
    out = up.upscale_loaded(img)
    t_up = time.perf_counter() - start
    after_upscale = _rss_gib()
    save_like(args.output, out, img)
    print(json.dumps({"w": img.width, "h": img.height, "tile": tile, "base_gib": base,
                      "upscale_gib": after_upscale, "total_gib": _rss_gib(),
                      "upscale_s": t_up, "total_s": time.perf_counter() - start,
                      "out_mp": out.shape[0] * out.shape[1] / 1e6}))


def run_memory(args: argparse.Namespace) -> None:
    from attnsr.models.registry import list_models

    kind = ("full" if args.full else "tiny config") if args.model in list_models() else "trained"
    print(f"model {args.model} ({kind}), x{args.scale}, "
          "tile auto, CPU; peak RSS in GiB")
    print(f"{'input':>11s} {'out MP':>7s} {'tile':>5s} {'after upscale':>14s} "
          f"{'after write':>12s} {'time s':>7s} {'MP/s':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.mp:
            src, dst = Path(tmp) / f"in_{mp}.png", Path(tmp) / f"out_{mp}.png"
            _make_input(src, mp)
            cmd = [sys.executable, __file__, "_child", "--input", str(src), "--output", str(dst),
                   "--model", args.model, "--scale", str(args.scale)]
            cmd += ["--full"] if args.full else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"{mp} MP: failed\n{res.stderr[-2000:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{r['w']:>5d}x{r['h']:<5d} {r['out_mp']:7.0f} {r['tile']:5d} "
                  f"{r['upscale_gib']:14.2f} {r['total_gib']:12.2f} {r['total_s']:7.0f} "
                  f"{r['out_mp'] / r['upscale_s']:6.2f}", flush=True)
            dst.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--models", nargs="*")
    sp.add_argument("--size", type=int, default=256)
    sp.add_argument("--scale", type=int, default=4)
    sp.add_argument("--repeat", type=int, default=1)
    sp.add_argument("--threads", type=int, default=0)
    sp.add_argument("--json")
    mp = sub.add_parser("memory")
    mp.add_argument("--mp", type=float, nargs="*", default=[1, 4, 12, 16])
    ch = sub.add_parser("_child")
    ch.add_argument("--input")
    ch.add_argument("--output")
    for p in (mp, ch):
        p.add_argument("--model", default="pan")
        p.add_argument("--scale", type=int, default=4)
        p.add_argument("--full", action="store_true", help="the preset, not its tiny config")
        p.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    {"speed": run_speed, "memory": run_memory, "_child": child}[args.cmd](args)


if __name__ == "__main__":
    main()
