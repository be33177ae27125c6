"""JPEG block edges in upscaled images: does a model sharpen the LR's 8x8 blocks?

The LR is the MATLAB bicubic downscale of ``--image`` (default: matplotlib's sample
photograph ``grace_hopper.jpg``) followed by a JPEG round trip at ``--quality``. Each model
upscales it; for each output the table gives

- blockiness: the mean absolute luma gradient across the JPEG block borders (every
  ``8 * scale`` output pixels, :func:`attnsr.metrics.blockiness` with ``grid_scale=scale``)
  divided by the mean elsewhere: ~1 without visible block edges;
- the same measure for the model's output from the clean (bicubic, no JPEG) LR: the
  baseline that the content and the interpolation phase set by themselves (a JPEG source
  photograph has its own 8x8 grid, which lines up with the output grid);
- PSNR-Y against the original (``crop_border = scale``, as the papers).

The first row, ``jpeg LR``, scores the LR itself at its own grid (``grid_scale=1``; the
clean column: the clean LR); its PSNR-Y is against the clean bicubic LR.

    python benchmarks/blockiness.py [--image PATH] [--quality 30] [--scale 4]
        [--models bicubic attnsr-x4] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image

import attnsr
from attnsr.data.degrade import jpeg
from attnsr.data.io import to_uint8
from attnsr.data.resize import imresize
from attnsr.metrics import blockiness, calc_psnr


def _load(path: Path, scale: int) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` cropped to multiples of ``scale``."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[0] - rgb.shape[0] % scale, rgb.shape[1] - rgb.shape[1] % scale
    return np.ascontiguousarray(rgb[:h, :w])


def _upscale(lr: np.ndarray, model: str, scale: int) -> np.ndarray:
    if model == "bicubic":
        return attnsr.upscale(lr, scale=scale, model="bicubic")
    return attnsr.upscale(lr, model=model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path,
                        default=Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    parser.add_argument("--quality", type=int, default=30, help="JPEG quality of the LR")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["bicubic", "attnsr-x4"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    s = args.scale
    hr = _load(args.image, s)
    clean_lr = imresize(hr, 1.0 / s)
    lr = to_uint8(jpeg(clean_lr.astype(np.float32) / 255.0, args.quality))
    rows = [{"model": "jpeg LR", "blockiness": blockiness(lr),
             "clean_blockiness": blockiness(clean_lr),
             "psnr_y": calc_psnr(lr, clean_lr, crop_border=s)}]
    for model in args.models:
        sr = _upscale(lr, model, s)
        if sr.shape != hr.shape:
            raise SystemExit(f"{model}: output {sr.shape} is not x{s} of the LR {lr.shape} "
                             f"(a model of another scale?)")
        clean_sr = _upscale(clean_lr, model, s)
        rows.append({"model": model, "blockiness": blockiness(sr, grid_scale=s),
                     "clean_blockiness": blockiness(clean_sr, grid_scale=s),
                     "psnr_y": calc_psnr(sr, hr, crop_border=s)})
    print(f"{args.image.name} {hr.shape[1]}x{hr.shape[0]}, x{s}, LR JPEG quality "
          f"{args.quality}, block grid every {8 * s} output px")
    print(f"{'model':<16}{'blockiness':>12}{'from clean LR':>15}{'PSNR-Y (dB)':>13}")
    for row in rows:
        print(f"{row['model']:<16}{row['blockiness']:>12.3f}{row['clean_blockiness']:>15.3f}"
              f"{row['psnr_y']:>13.2f}")
    if args.json:
        meta = {"image": str(args.image), "quality": args.quality, "scale": s}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
