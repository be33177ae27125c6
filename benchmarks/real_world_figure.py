"""The README's before/after figure for real photos: a JPEG photo that a dependency ships
(matplotlib's ``grace_hopper.jpg``), made into a real-world low-resolution input (MATLAB
bicubic /4, then JPEG at quality 30, as a web thumbnail), upscaled x4 by bicubic, the
clean ``attnsr-x4`` and the real-world ``attnsr-real-x4``. Each panel is a crop, titled
with its PSNR-Y against the original and its block-edge ratio (1 = no visible 8x8 grid).

    python benchmarks/real_world_figure.py [--quality 30] [--out docs/figures/real_world_x4.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image  # noqa: E402

import attnsr  # noqa: E402
from attnsr.data.degrade import jpeg  # noqa: E402
from attnsr.data.io import to_uint8  # noqa: E402
from attnsr.data.resize import imresize  # noqa: E402
from attnsr.metrics import blockiness, calc_psnr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def jpeg_lr(hr: np.ndarray, scale: int, quality: int) -> np.ndarray:
    """MATLAB bicubic downscale, then a JPEG round trip: uint8 ``(H/s, W/s, 3)``."""
    return to_uint8(jpeg(imresize(hr, 1.0 / scale) / 255.0, quality))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=int, default=30)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--models", nargs="+", default=["bicubic", "attnsr-x4", "attnsr-real-x4"])
    ap.add_argument("--crop", type=int, nargs=4, default=[90, 140, 240, 240],
                    metavar=("Y", "X", "H", "W"), help="crop of the output, in HR pixels")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/real_world_x4.png")
    args = ap.parse_args()
    s = args.scale
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    hr = np.asarray(Image.open(path).convert("RGB"))
    hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
    lr = jpeg_lr(hr, s, args.quality)
    y, x, h, w = args.crop
    panels = [("original", hr, None, None)]
    for name in args.models:
        sr = attnsr.upscale(lr, model=name, scale=s)
        psnr = calc_psnr(sr, hr, crop_border=s)
        panels.append((name, sr, psnr, blockiness(sr, grid_scale=s)))
        print(f"{name:>16}: PSNR-Y {psnr:.2f} dB, block-edge ratio "
              f"{blockiness(sr, grid_scale=s):.2f}")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (name, img, psnr, blk) in zip(axes, panels, strict=True):
        ax.imshow(img[y:y + h, x:x + w], interpolation="nearest")
        title = name if psnr is None else f"{name}\n{psnr:.2f} dB, blocks {blk:.2f}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"x{s} from a JPEG (quality {args.quality}) thumbnail of grace_hopper.jpg",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
