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
``attnsr upscale`` does (streamed to the encoder, allocator tuned by
``attnsr.malloc.tune_malloc``; ``--in-memory``: the whole output array first,
``--system-malloc``: glibc's settings); its peak resident memory (``ru_maxrss``) is
read right after upscaling and again after writing, with the system share of the CPU
time and the minor page faults per output megapixel (allocation churn). ``speed``
prints the same two for its tiled runs. The default model is PAN with its tiny test
configuration (random weights): with ``tile="auto"`` the tile activations are sized to
the same budget whatever the model, so the peak is the model-independent part (image
buffers, strip accumulator) plus at most the budget; the tiny model only makes a
192-megapixel run finish in minutes on a CPU. ``--model pan --full`` uses the real one;
a name that is not a registered architecture (bundled weights such as ``attnsr-x4``, the
``attnsr upscale`` default, or a checkpoint path) is loaded as ``attnsr upscale`` does.

    python benchmarks/upscale_speed.py speed
    python benchmarks/upscale_speed.py memory --mp 1 4 12 16
    python benchmarks/upscale_speed.py memory --mp 12 --model attnsr-x4 --threads 1

``compare``: in one process, the ``attnsr upscale`` paths for bundled weights
(``--model``, default ``attnsr-real-x4``, what ``attnsr upscale photo.jpg`` runs; the
default ``--backend auto``, today's ``--backend torch``, ``--fast`` int8; ``--also``: more
bundled weights through their default path) against
bicubic and the NTIRE efficient-SR winners run from their authors' code and committed
weights (``--dscf-repo``: a checkout of Amazingren/NTIRE2025_ESR, DSCF = team 23;
``--span-repo``: Amazingren/NTIRE2024_ESR, SPAN = team 38; nothing of theirs is copied
here) on a 256x256 LR image and on Set5's x4 LR images, whole image (``tile=0``) through
the same runner/Upscaler path, rounds interleaved, best round each; also the share of
CPU time spent in the kernel and minor page faults per output megapixel.
``warmup``: first image against the second and third in fresh processes.

    python benchmarks/upscale_speed.py compare --threads 2 --also attnsr-x4-c32 attnsr-x4 \
        --dscf-repo /tmp/NTIRE2025_ESR --span-repo /tmp/NTIRE2024_ESR
    python benchmarks/upscale_speed.py warmup --threads 2
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
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
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t_half = _best_time(lambda: half.upscale_hwc(pixels), repeat)
    churn = cpu_usage(r0, resource.getrusage(resource.RUSAGE_SELF), mp * repeat)
    tile = half.tile_size(size, size)
    plan = plan_tiles(size, size, tile, half._planes(lr, None, tile)[0].overlap, multiple=m)
    return {"model": name, "size": size, "auto_tile": auto.tile_size(size, size),
            "tile": tile, "tiles": plan.num_tiles,
            "work": plan.num_tiles * plan.tile_h * plan.tile_w / size**2,
            "whole_mp_s": mp / t_whole, "auto_mp_s": mp / t_auto, "tiled_mp_s": mp / t_half,
            "auto_over_whole": t_auto / t_whole, "tiled_over_whole": t_half / t_whole,
            "sys_share": churn["sys_share"], "faults_per_mp": churn["faults_per_mp"]}


HEADER = (f"{'model':14s} {'size':>4s} {'whole':>7s} {'auto':>7s} {'tiled':>7s} "
          f"{'auto/whole':>10s} {'tiled/whole':>11s} {'tiles':>5s} {'work':>5s} "
          f"{'sys %':>6s} {'flt/MP':>7s}")


def run_speed(args: argparse.Namespace) -> None:
    from attnsr.malloc import tune_malloc
    from attnsr.models.registry import list_models

    torch.set_num_threads(args.threads) if args.threads else None
    tuned = False if args.system_malloc else tune_malloc()  # as the CLI does
    names = args.models or list_models()
    print("output MP/s, x4, CPU fp32; auto: tile='auto' (one tile at this size); tiled: "
          "tiles of half the image, default overlap; work = tiled pixels / image pixels; "
          "sys % (system share of CPU time) and flt/MP (minor page faults per output MP) "
          f"of the tiled runs, malloc {'tuned' if tuned else 'as glibc sets it'}")
    print(HEADER)
    rows = []
    for name in names:
        size = 64 if name in HEAVY else args.size
        r = speed_row(name, size, args.scale, args.repeat)
        rows.append(r)
        print(f"{name:14s} {r['size']:4d} {r['whole_mp_s']:7.3f} {r['auto_mp_s']:7.3f} "
              f"{r['tiled_mp_s']:7.3f} {r['auto_over_whole']:10.2f} "
              f"{r['tiled_over_whole']:11.2f} {r['tiles']:5d} {r['work']:5.2f} "
              f"{100 * r['sys_share']:6.1f} {r['faults_per_mp']:7.0f}", flush=True)
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
    from attnsr.malloc import tune_malloc
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
    tuned = False if args.system_malloc else tune_malloc()
    base = _rss_gib()
    r0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    img = read_image(args.input, max_pixels=0)
    c = img.pixels.shape[2]
    held = up._held_bytes(img.height, img.width, c, c + (img.alpha is not None),
                          2 if img.bit_depth > 8 else 1)
    tile = up.tile_size(img.height, img.width, held)  # both paths choose the same tile
    if args.in_memory:  # the whole output array, then the encoder (formats that cannot stream)
        out = up.upscale_loaded(img)
        t_up = time.perf_counter() - start
        after_upscale = _rss_gib()
        save_like(args.output, out, img)
    else:  # as ``attnsr upscale`` writes a PNG: finished strips streamed to the encoder
        up.write_upscaled(img, args.output)
        t_up = time.perf_counter() - start
        after_upscale = _rss_gib()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out_mp = img.height * img.width * args.scale**2 / 1e6
    print(json.dumps({"w": img.width, "h": img.height, "tile": tile, "base_gib": base,
                      "upscale_gib": after_upscale, "total_gib": _rss_gib(),
                      "upscale_s": t_up, "total_s": time.perf_counter() - start,
                      "out_mp": out_mp, "malloc_tuned": tuned, **cpu_usage(r0, r1, out_mp)}))


def cpu_usage(r0: Any, r1: Any, out_mp: float) -> dict[str, float]:
    """System-time share of the CPU time and minor page faults per output megapixel
    between two ``resource.getrusage`` readings (allocation churn: each fault is a page
    the kernel zero-filled for a buffer that was just freed and allocated again)."""
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {"user_s": user, "sys_s": system, "sys_share": system / max(user + system, 1e-9),
            "faults_per_mp": (r1.ru_minflt - r0.ru_minflt) / max(out_mp, 1e-9)}


def run_memory(args: argparse.Namespace) -> None:
    from attnsr.models.registry import list_models

    kind = ("full" if args.full else "tiny config") if args.model in list_models() else "trained"
    print(f"model {args.model} ({kind}), x{args.scale}, "
          "tile auto, CPU; peak RSS in GiB")
    how = "whole output array, then the encoder" if args.in_memory else "PNG streamed"
    print(f"{how}; malloc {'as glibc sets it' if args.system_malloc else 'tuned'}")
    print(f"{'input':>11s} {'out MP':>7s} {'tile':>5s} {'after upscale':>14s} "
          f"{'after write':>12s} {'time s':>7s} {'MP/s':>6s} {'sys %':>6s} {'flt/MP':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.mp:
            src, dst = Path(tmp) / f"in_{mp}.png", Path(tmp) / f"out_{mp}.png"
            _make_input(src, mp)
            cmd = [sys.executable, __file__, "_child", "--input", str(src), "--output", str(dst),
                   "--model", args.model, "--scale", str(args.scale)]
            cmd += ["--full"] if args.full else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--in-memory"] if args.in_memory else []
            cmd += ["--system-malloc"] if args.system_malloc else []
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"{mp} MP: failed\n{res.stderr[-2000:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{r['w']:>5d}x{r['h']:<5d} {r['out_mp']:7.0f} {r['tile']:5d} "
                  f"{r['upscale_gib']:14.2f} {r['total_gib']:12.2f} {r['total_s']:7.0f} "
                  f"{r['out_mp'] / r['upscale_s']:6.2f} {100 * r['sys_share']:6.1f} "
                  f"{r['faults_per_mp']:7.0f}", flush=True)
            dst.unlink(missing_ok=True)


# --------------------------------------------------------------------------- compare
# (repository file, weights file, class, constructor kwargs), as each challenge's
# test_demo.py builds them (load_state_dict strict=False there too)
PEERS = {
    "DSCF": ("models/team23_DSCF.py", "model_zoo/team23_DSCF.pth", "DSCF",
             {"feature_channels": 26, "upscale": 4}),
    "SPAN": ("models/team38_SPAN.py", "model_zoo/team38_span_ch28_slim.pth", "SPAN30",
             {"feature_channels": 28, "upscale": 4}),
}


def peer_runner(name: str, repo: Path, nhwc: bool) -> Any:
    """A challenge model (authors' code and committed weights, run from ``repo``) as an
    attnsr runner (pad -> run -> clamp), so every row goes through the same path."""
    from attnsr.models.base import ModelTraits
    from attnsr.runner import Runner
    from official_parity import cuda_is_cpu, load_class, read_state_dict

    code, weights, cls, kwargs = PEERS[name]
    with cuda_is_cpu():
        model = load_class(repo / code, cls, None)(3, 3, **kwargs)
    model.load_state_dict(read_state_dict(repo / weights), strict=False)
    runner = Runner(model=model.eval(), name=name + (" NHWC" if nhwc else ""), arch=name,
                    scale=4, in_channels=3, out_channels=3,
                    traits=ModelTraits(channels_last=nhwc))  # no source: never cached
    return runner.to("cpu").eval()


def _usage() -> tuple[float, float, float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime, ru.ru_stime, ru.ru_minflt


def _inputs(args: argparse.Namespace) -> dict[str, list[np.ndarray]]:
    """The two workloads: one 256x256 LR image (smooth random texture) and Set5's x4 LR."""
    from attnsr.data.io import read_image

    gen = np.random.default_rng(0)
    noise = torch.from_numpy(gen.random((1, 3, 64, 64), np.float32))
    smooth = torch.nn.functional.interpolate(noise, size=(256, 256), mode="bicubic")
    sets = {"256x256": [smooth[0].clamp(0, 1).permute(1, 2, 0).numpy().copy()]}
    lr_dir = args.data / "benchmark" / "Set5" / "LR_bicubic" / "X4"
    if lr_dir.is_dir():
        sets["Set5 x4"] = [read_image(p).pixels for p in sorted(lr_dir.glob("*.png"))]
    else:
        print(f"({lr_dir} not found: Set5 rows left out)")
    return sets


def run_compare(args: argparse.Namespace) -> None:
    """Default path vs torch vs --fast vs bicubic vs the challenge winners, one process,
    interleaved rounds, best round per (path, workload)."""
    from attnsr.inference.upscale import Upscaler

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    paths: dict[str, Any] = {
        "attnsr default": Upscaler(args.model, tile=0, device="cpu"),
        "attnsr torch": Upscaler(args.model, tile=0, device="cpu", backend="torch"),
        "attnsr --fast": Upscaler(args.model, tile=0, device="cpu", fast=True),
        "bicubic": Upscaler("bicubic", scale=4, tile=0, device="cpu"),
    }
    for name in args.also:  # other bundled weights through their default path
        paths[name] = Upscaler(name, tile=0, device="cpu")
    for name, repo in (("DSCF", args.dscf_repo), ("SPAN", args.span_repo)):
        if repo is not None:
            paths[name] = Upscaler(peer_runner(name, repo, nhwc=False), tile=0, device="cpu",
                                   backend="torch")  # the authors' code, as they run it
            if args.peer_onnx:  # the same network in attnsr's onnxruntime path
                paths[name + " ort"] = Upscaler(peer_runner(name, repo, nhwc=False), tile=0,
                                                device="cpu", backend="onnxruntime")
            if args.peer_nhwc:
                paths[name + " NHWC"] = Upscaler(peer_runner(name, repo, nhwc=True),
                                                 tile=0, device="cpu", backend="torch")
    print(f"loaded in {time.perf_counter() - start:.1f} s; default backend: "
          f"{paths['attnsr default'].runner.backend} ({paths['attnsr default'].runner.name})")
    workloads = _inputs(args)
    for up in paths.values():  # warm-up on every shape of both workloads
        for images in workloads.values():
            for img in images:
                up.upscale_hwc(img)
    best = {(p, w): math.inf for p in paths for w in workloads}
    cost = {p: [0.0, 0.0, 0.0, 0] for p in paths}  # wall, user, sys, minor faults
    out_mp = {w: sum(i.shape[0] * i.shape[1] * 16 for i in imgs) / 1e6
              for w, imgs in workloads.items()}
    for _ in range(args.rounds):
        for w, images in workloads.items():
            for p, up in paths.items():
                # one untimed image first: the previous path may have used another thread
                # pool (onnxruntime's vs OpenMP's), whose wake-up is not this path's cost
                up.upscale_hwc(images[0])
                t0, u0, s0, f0 = _usage()
                for img in images:
                    up.upscale_hwc(img)
                t1, u1, s1, f1 = _usage()
                best[(p, w)] = min(best[(p, w)], t1 - t0)
                c = cost[p]
                c[0] += t1 - t0
                c[1] += u1 - u0
                c[2] += s1 - s0
                c[3] += f1 - f0
    total_mp = args.rounds * sum(out_mp.values())
    ref = "DSCF" if "DSCF" in paths else "attnsr torch"
    rows = []
    print(f"\nx4, CPU, {args.threads} threads, best of {args.rounds} interleaved rounds "
          f"(output MP/s; ratio to {ref} in the same workload)")
    head = "".join(f"{w + ' MP/s':>16s}{'x ' + ref:>10s}" for w in workloads)
    print(f"{'path':18s}{head}{'sys %':>8s}{'faults/MP':>11s}")
    for p in paths:
        line, row = f"{p:18s}", {"path": p}
        for w in workloads:
            rate = out_mp[w] / best[(p, w)]
            ratio = best[(ref, w)] / best[(p, w)]
            line += f"{rate:16.2f}{ratio:10.2f}"
            row[w] = {"mp_s": round(rate, 3), "vs_" + ref: round(ratio, 3)}
        wall, user, sys_, faults = cost[p]
        share = 100 * sys_ / max(user + sys_, 1e-9)
        line += f"{share:8.1f}{faults / total_mp:11.0f}"
        row.update(sys_share=round(share, 2), minor_faults_per_mp=round(faults / total_mp))
        rows.append(row)
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rounds": args.rounds,
                                               "rows": rows}, indent=1))


def run_warmup(args: argparse.Namespace) -> None:
    """First image against the second in fresh processes: what a new user's run costs."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np, torch\n"
        f"torch.set_num_threads({args.threads})\n"
        "from attnsr.inference.upscale import Upscaler\n"
        "t1 = time.perf_counter()\n"
        f"up = Upscaler({args.model!r}, device='cpu', fast={args.fast}, "
        f"backend={args.backend!r})\n"
        "t2 = time.perf_counter()\n"
        "img = np.random.default_rng(0).random((256, 256, 3), np.float32)\n"
        "times = []\n"
        "for _ in range(3):\n"
        "    s = time.perf_counter(); up.upscale_hwc(img); times.append(time.perf_counter() - s)\n"
        "print(t1 - t0, t2 - t1, *times, up.runner.backend)\n"
    )
    print(f"fresh process, {args.model}{' --fast' if args.fast else ''}, 256x256 -> x4, "
          f"{args.threads} threads (s)")
    print(f"{'import':>7s} {'load':>6s} {'1st':>6s} {'2nd':>6s} {'3rd':>6s} {'1st/2nd':>8s} "
          "backend")
    for _ in range(args.runs):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=False, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if res.returncode != 0:
            raise SystemExit(res.stderr[-2000:])
        imp, load, a, b, c, backend = res.stdout.split()[-6:]
        print(f"{float(imp):7.2f} {float(load):6.2f} {float(a):6.2f} {float(b):6.2f} "
              f"{float(c):6.2f} {float(a) / float(b):8.2f} {backend}", flush=True)


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
    sp.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc settings alone (no tune_malloc)")
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
        p.add_argument("--in-memory", action="store_true",
                       help="hold the whole output, then encode (the non-streaming path)")
        p.add_argument("--system-malloc", action="store_true",
                       help="leave glibc's malloc settings alone (no tune_malloc)")
    cp = sub.add_parser("compare", help="default vs torch vs --fast vs bicubic vs DSCF/SPAN")
    cp.add_argument("--model", default="attnsr-real-x4",
                    help="the bundled weights of the three attnsr paths (default: what "
                    "`attnsr upscale` runs at x4)")
    cp.add_argument("--also", nargs="*", default=[],
                    help="more bundled weights, each through its default path")
    cp.add_argument("--dscf-repo", type=Path, help="checkout of Amazingren/NTIRE2025_ESR")
    cp.add_argument("--span-repo", type=Path, help="checkout of Amazingren/NTIRE2024_ESR")
    cp.add_argument("--peer-nhwc", action="store_true", help="also run the peers in NHWC")
    cp.add_argument("--peer-onnx", action="store_true",
                    help="also run the peers exported to onnxruntime (attnsr's exporter)")
    cp.add_argument("--data", type=Path, default=DATA)
    cp.add_argument("--threads", type=int, default=2)
    cp.add_argument("--rounds", type=int, default=5)
    cp.add_argument("--json")
    wp = sub.add_parser("warmup", help="first image vs second in fresh processes")
    wp.add_argument("--model", default=None)
    wp.add_argument("--fast", action="store_true")
    wp.add_argument("--backend", default="auto")
    wp.add_argument("--threads", type=int, default=2)
    wp.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    {"speed": run_speed, "memory": run_memory, "_child": child, "compare": run_compare,
     "warmup": run_warmup}[args.cmd](args)


if __name__ == "__main__":
    main()
