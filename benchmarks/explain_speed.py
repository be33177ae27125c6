"""How long does ``attnsr explain`` take on CPU? And the one command that regenerates the
figures of ``docs/explain.md``.

Speed (default): runs ``python -m attnsr explain`` in a fresh process (imports included) on
a synthetic ``--size x --size`` image (edges, gradients, texture) for each ``--models``
entry and prints wall time plus the breakdown from ``explain.json``::

    python benchmarks/explain_speed.py                    # 256x256, attnsr_lite, 32 LAM steps
    python benchmarks/explain_speed.py --models attnsr_lite swinir_light --size 128

Figures::

    python benchmarks/explain_speed.py --figures docs/figures

writes the docs' figures from matplotlib's bundled ``grace_hopper.jpg`` (a 256x256 crop is
the HR image, its MATLAB-bicubic x1/4 the input): the full set for the bundled
``attnsr-x4`` weights (the ``attnsr_lite`` preset with random weights while they are not
shipped), plus the channel heatmap of ``rcan_small`` and the query attention of
``swinir_light`` (random weights: they show the figure types, not trained behaviour).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """uint8 ``(size, size, 3)``: a diagonal gradient, sharp disc and bars, fine stripes
    and some noise, so that every part of a model has something to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    r = 0.6 * xx + 0.3 * yy
    g = 0.5 + 0.4 * np.sin(2 * np.pi * 9 * xx * (1 + yy))  # chirp stripes
    b = ((xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.06).astype(float)  # a disc
    bars = ((xx * 24).astype(int) % 2) * (yy > 0.75)
    img = np.stack([r + 0.3 * bars, g * (1 - 0.5 * b), 0.2 + 0.7 * b], axis=-1)
    img = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_explain(image: Path, model: str, out: Path,
                extra: list[str]) -> tuple[float, float, dict]:
    """Run the CLI in a fresh process: ``(wall s, CPU s of the process, explain.json)``."""
    # --random-weights: a bare preset runs with random weights, as these timings always
    # did; pretrained names (attnsr-x4) still load their weights
    cmd = [sys.executable, "-m", "attnsr", "explain", str(image), "--model", model,
           "--random-weights", "-o", str(out), *extra]
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, cpu, json.loads((out / "explain.json").read_text())


def speed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / f"synthetic_{args.size}.png"
        Image.fromarray(synthetic_image(args.size)).save(image)
        print(f"attnsr explain on a {args.size}x{args.size} input (x{args.scale}), CPU: "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print("seconds as wall / CPU (CPU: all threads; wall grows with other load)")
        print(f"{'model':<16}{'total':>13}{'SR+capture':>13}{'figures':>13}{'LAM':>13}"
              f"{'DI':>7}{'compl.err':>10}")
        for model in args.models:
            extra = ["--scale", str(args.scale), "--lam-steps", str(args.lam_steps)]
            wall, cpu, rep = run_explain(image, model, Path(tmp) / model, extra)
            t, c, lam = rep["timing_s"], rep["cpu_s"], rep.get("lam", {})
            figs = t["figures"] + t.get("lam_figure", 0), c["figures"] + c.get("lam_figure", 0)
            cells = [(wall, cpu), (t["sr_with_capture"], c["sr_with_capture"]), figs,
                     (t.get("lam", 0.0), c.get("lam", 0.0))]
            print(f"{model:<16}" + "".join(f"{w:>6.1f} /{u:>5.1f}" for w, u in cells)
                  + f"{lam.get('diffusion_index', float('nan')):>7.2f}"
                  f"{lam.get('completeness_error', float('nan')):>10.2%}")


def docs_sample(tmp: Path) -> tuple[Path, Path]:
    """LR/HR pair from matplotlib's bundled sample photo (no third-party data)."""
    from matplotlib import cbook

    from attnsr.data.resize import imresize

    with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
        photo = np.asarray(im.convert("RGB"))
    hr = photo[60:316, 128:384]  # 256x256: face and glasses
    lr_path, hr_path = tmp / "lr.png", tmp / "hr.png"
    Image.fromarray(hr).save(hr_path)
    Image.fromarray(imresize(hr, 0.25)).save(lr_path)
    return lr_path, hr_path


def small_png(src: Path, dst: Path) -> None:
    """Copy a figure as a 256-colour PNG (a few times smaller; fine for docs)."""
    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(
            dst, optimize=True)


def figures(dest: Path) -> None:
    from attnsr.models.registry import get_pretrained

    tag = get_pretrained("attnsr-x4")
    bundled = tag is not None and tag.available
    main_model = "attnsr-x4" if bundled else "attnsr_lite"
    runs = [  # (model, figures kept, extra args)
        (main_model, None, ["--lam-steps", "50", "--patch", "112,120,24,24"]),
        ("rcan_small", ["channel_attention.png"], ["--lam-steps", "0"]),
        ("swinir_light", ["query_attention.png"], ["--lam-steps", "0", "--query", "40,30"]),
    ]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        lr, hr = docs_sample(Path(tmp))
        for model, keep, extra in runs:
            out = Path(tmp) / model
            wall, _, rep = run_explain(lr, model, out,
                                       ["--scale", "4", "--hr", str(hr), *extra])
            for name in keep or rep["figures"]:
                small_png(out / name, dest / f"explain_{model}_{name}")
            if keep is None:
                shutil.copy(out / "explain.json", dest / f"explain_{model}.json")
            print(f"{model}: {wall:.1f} s -> {', '.join(keep or rep['figures'])}")
    print(f"figures in {dest} ({'bundled weights' if bundled else 'random weights'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["attnsr_lite"])
    p.add_argument("--size", type=int, default=256, help="input side (pixels)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--lam-steps", type=int, default=32)
    p.add_argument("--figures", type=Path, help="regenerate the docs figures into this folder")
    args = p.parse_args()
    if args.figures:
        figures(args.figures)
    else:
        speed(args)


if __name__ == "__main__":
    main()
