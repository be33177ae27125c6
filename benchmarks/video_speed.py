"""Video upscaling: frames per second, and peak memory against clip length.

``speed``: a synthetic 480p clip (854x480, 25 fps, H.264 + AAC, made here with PyAV) is
upscaled x2 and x4 on the CPU, in the same run, three ways:

- ``image loop``: what the image path does frame by frame (decode with PyAV, one
  :meth:`Upscaler.upscale_hwc` per frame, each frame written as a PNG, as
  ``attnsr upscale frames/`` would after extracting them), no video encode;
- ``video, 1 frame/call``: :func:`attnsr.upscale_video` streaming (decode, upscale,
  H.264 encode in segments, remux with the audio), ``batch_size=1``;
- ``video, batched``: the same with ``batch_size=8`` (as many whole frames per model
  call as fit in the memory budget, at most 8; the default on a GPU, not on the CPU).

Models: ``bicubic`` (the pipeline's own cost: decode, colour conversion, encode) and the
bundled default for the scale (what ``attnsr upscale`` runs without ``--model``). Each row is one
timed run after a warm-up on a few frames; frames/s are of whole runs (decode to
written file).

``memory``: 240p clips (426x240) of 100 and 1,000 frames are upscaled x2 (bicubic,
H.264) each in its own subprocess; the peak resident memory (``ru_maxrss``) of each is
reported. Streaming means the two peaks are within 10% of each other and under 1 GiB.

    python benchmarks/video_speed.py speed --frames 12
    python benchmarks/video_speed.py memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

GIB = 1024**3


def make_clip(path: Path, width: int, height: int, frames: int, rate: int = 25) -> Path:
    """A moving gradient with noise (so the encoder has work), and a 440 Hz AAC track."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "fast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = out.add_stream("aac", rate=48000)
        aus.layout = "stereo"
        for i in range(frames):
            base = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1)
            arr = np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        t, size = 0, 1024
        while t < frames / rate * 48000:
            wave = (0.2 * np.sin(2 * np.pi * 440 * (t + np.arange(size)) / 48000))
            af = av.AudioFrame.from_ndarray(np.stack([wave, wave]).astype(np.float32),
                                            format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, t
            out.mux(aus.encode(af))
            t += size
        out.mux(aus.encode())
    return path


# --------------------------------------------------------------------------- speed
def image_loop(src: Path, up: Any, folder: Path, limit: int | None = None) -> int:
    """The image path frame by frame: decode, upscale one frame, write a PNG."""
    from attnsr.data.io import write_image

    n = 0
    with av.open(str(src)) as c:
        for frame in c.decode(c.streams.video[0]):
            rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255)
            write_image(folder / f"{n:05d}.png", up.upscale_hwc(rgb))
            n += 1
            if limit is not None and n >= limit:
                break
    return n


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed_rows(src: Path, warm: Path, frames: int, scale: int, model: str | None,
               work: Path) -> list[dict[str, Any]]:
    import attnsr
    from attnsr.inference.upscale import Upscaler
    from attnsr.inference.video import MAX_BATCH, batch_size_for

    up = Upscaler(model, scale=scale, device="cpu")
    attnsr.upscale_video(warm, work / "warm_x.mp4", upscaler=up)  # loads, probes memory
    batch = batch_size_for(up, 480, 854, MAX_BATCH)  # as many as fit, up to 8
    runs = [("image loop (PNG per frame)", lambda: image_loop(src, up, work)),
            ("video, 1 frame/call", lambda: attnsr.upscale_video(
                src, work / "b1.mp4", upscaler=up, batch_size=1)),
            (f"video, batched ({batch} frames/call)", lambda: attnsr.upscale_video(
                src, work / "bn.mp4", upscaler=up, batch_size=MAX_BATCH))]
    rows = []
    for how, fn in runs:
        seconds = _timed(fn)
        rows.append({"model": up.runner.name, "scale": scale, "how": how,
                     "fps": frames / seconds, "seconds": seconds})
        print(f"  {rows[-1]['model']} x{scale} {how}: {rows[-1]['fps']:.2f} frames/s",
              file=sys.stderr, flush=True)
    return rows


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = make_clip(work / "in480.mp4", 854, 480, args.frames)
        warm = make_clip(work / "warm.mp4", 854, 480, 2)
        for scale in args.scales:
            for model in args.models:
                model = None if model == "default" else model  # the bundled default
                rows.extend(speed_rows(src, warm, args.frames, scale, model, work))
    print(f"\n480p (854x480) in, {args.frames} frames, CPU, {torch.get_num_threads()} "
          "threads\n")
    print("| model | scale | how | frames/s | vs image loop |")
    print("|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and
                    r["scale"] == row["scale"] and r["how"].startswith("image"))
        print(f"| `{row['model']}` | x{row['scale']} | {row['how']} | {row['fps']:.2f} | "
              f"{row['fps'] / base['fps']:.2f}x |")


# --------------------------------------------------------------------------- memory
def memory_child(args: argparse.Namespace) -> None:
    import attnsr

    start = time.perf_counter()
    result = attnsr.upscale_video(args.src, args.dst, model=args.model, scale=2,
                                  device="cpu")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"frames": result.frames, "peak": peak,
                      "seconds": time.perf_counter() - start}))


def memory(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            src = make_clip(Path(tmp) / f"in{n}.mp4", 426, 240, n)
            cmd = [sys.executable, __file__, "memory-child", "--src", str(src), "--dst",
                   str(Path(tmp) / f"out{n}.mp4"), "--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"  {n} frames: peak {rows[-1]['peak'] / 2**20:.0f} MiB", file=sys.stderr)
    print(f"\n240p (426x240) -> x2, {args.model}, H.264\n")
    print("| frames | peak RSS | time | frames/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']:,} | {r['peak'] / 2**20:.0f} MiB | {r['seconds']:.1f} s | "
              f"{r['frames'] / r['seconds']:.1f} |")
    peaks = [r["peak"] for r in rows]
    spread = max(peaks) / min(peaks) - 1
    ok = spread <= 0.10 and max(peaks) < GIB
    print(f"\npeaks within {spread:.1%} of each other, max {max(peaks) / 2**20:.0f} MiB: "
          f"{'OK' if ok else 'NOT bounded'} (target: within 10%, under 1 GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--frames", type=int, default=12)
    sp.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    sp.add_argument("--models", nargs="+", default=["bicubic", "default"])
    sp.add_argument("--threads", type=int, default=None)
    mp = sub.add_parser("memory")
    mp.add_argument("--lengths", type=int, nargs="+", default=[100, 1000])
    mp.add_argument("--model", default="bicubic")
    child = sub.add_parser("memory-child")
    child.add_argument("--src")
    child.add_argument("--dst")
    child.add_argument("--model", default="bicubic")
    args = parser.parse_args()
    {"speed": speed, "memory": memory, "memory-child": memory_child}[args.cmd](args)


if __name__ == "__main__":
    main()
