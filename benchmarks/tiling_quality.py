"""How much tiling changes the result: PSNR of tiled vs whole-image upscaling on Set5 /
Set14, and how visible tile seams are.

For each model and image (the stored ``LR_bicubic/X{s}`` inputs of ``../shared/data``):

- ``whole``: one forward of the whole image (``ModelDescriptor.__call__``);
- ``tiled``: :func:`~attnsr.inference.tiling.tiled_forward` with ``--tile`` (64 LR
  pixels: the benchmark images are small, so most are cut into 4-9 tiles) and the
  default overlap;
- PSNR of each against the HR (Y channel, ``crop_border = scale``, uint8, as the
  papers) and their difference; ``PSNR(tiled, whole)`` measures the tiling error by
  itself, independent of how good the model is;
- seam ratio: mean absolute gradient across the tile borders divided by the mean
  elsewhere (:func:`seams.seam_ratio`), for the tiled output and,
  as the reference the content sets, for the whole-image output at the same places.

Models with global operations (channel attention pooled over the whole input: RCAN,
IMDN; non-local attention: NLSN) are where tiling is approximate. Local models are
exact when the dropped quarter of the overlap covers their receptive field; with
tiles as small as these the default overlap is capped at a quarter of the tile, so
deep local models are approximate too (their rows show by how little). Without
trained weights (none bundled yet, no checkpoint passed with ``--models PATH``) the
models are randomly initialised: their absolute PSNR is meaningless, the tiled-vs-whole
differences are still what tiling does to that network.

    python benchmarks/tiling_quality.py --models rcan_small imdn attnsr_lite
    python benchmarks/tiling_quality.py --models path/to/RCAN_BIX4.pt --scale 4
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seams import seam_positions, seam_ratio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def _to_uint8(sr: torch.Tensor, gray: bool) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> uint8 (H, W, C); gray images back to one channel."""
    x = sr[0].mean(0, keepdim=True) if gray else sr[0]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def measure(desc: Any, item: Any, scale: int, tile: int) -> dict[str, float]:
    """Tiled-vs-whole numbers for one benchmark item."""
    from attnsr.inference.tiling import default_overlap, plan_tiles, tiled_forward
    from attnsr.metrics import calc_psnr

    lr = torch.from_numpy(item.lr).permute(2, 0, 1)[None].float() / 255.0
    lr = lr.expand(1, 3, *lr.shape[-2:]) if item.is_grayscale else lr
    overlap = default_overlap(desc, tile)
    whole = desc(lr)
    tiled = tiled_forward(desc, lr, scale, tile, overlap)
    plan = plan_tiles(*lr.shape[-2:], tile, overlap, multiple=desc.multiple_of,
                      min_size=desc.traits.min_size)
    rows, cols = seam_positions(plan, scale)
    w8, t8 = _to_uint8(whole, item.is_grayscale), _to_uint8(tiled, item.is_grayscale)
    has_seams = bool(rows or cols)
    return {
        "tiles": plan.num_tiles,
        "psnr_whole": calc_psnr(w8, item.hr, crop_border=scale),
        "psnr_tiled": calc_psnr(t8, item.hr, crop_border=scale),
        "psnr_tiled_vs_whole": calc_psnr(t8, w8, crop_border=scale),
        "max_abs": float((tiled - whole).abs().max()),
        "seam_tiled": seam_ratio(tiled[0], rows, cols) if has_seams else float("nan"),
        "seam_whole": seam_ratio(whole[0], rows, cols) if has_seams else float("nan"),
    }


def load_model(name: str, scale: int) -> tuple[Any, str]:
    """Descriptor and a note: trained (bundled / checkpoint) or random-init."""
    from attnsr.models.registry import list_models
    from attnsr.resolver import load_pretrained

    desc = load_pretrained(name, scale=scale)
    random = name in list_models() and not Path(name).exists()
    return desc, "random-init" if random else "trained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["rcan_small", "imdn", "attnsr_lite"])
    parser.add_argument("--sets", nargs="*", default=["Set5", "Set14"])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args()
    from attnsr.data.benchmark import BenchmarkSet

    torch.manual_seed(0)
    print(f"x{args.scale}, tile {args.tile}; PSNR in dB (Y, crop {args.scale}); "
          "seam = gradient across tile borders / elsewhere")
    print(f"{'model':14s} {'weights':11s} {'set':5s} {'PSNR whole':>10s} {'tiled':>8s} "
          f"{'max|dPSNR|':>10s} {'max|diff|':>9s} {'tiled vs whole':>14s} {'seam tiled':>10s} "
          f"{'whole':>6s}")
    for name in args.models:
        desc, note = load_model(name, args.scale)
        for set_name in args.sets:
            rows = [measure(desc, item, args.scale, args.tile)
                    for item in BenchmarkSet.from_folder(DATA / set_name, args.scale)]
            _print_row(name, note, set_name, rows)


def _print_row(name: str, note: str, set_name: str, rows: list[dict[str, float]]) -> None:
    def mean(key: str) -> float:
        vals = [r[key] for r in rows if np.isfinite(r[key])]
        return statistics.fmean(vals) if vals else float("nan")

    deltas = [abs(r["psnr_tiled"] - r["psnr_whole"]) for r in rows]
    print(f"{name:14s} {note:11s} {set_name:5s} {mean('psnr_whole'):10.3f} "
          f"{mean('psnr_tiled'):8.3f} {max(deltas):10.4f} "
          f"{max(r['max_abs'] for r in rows):9.2e} "
          f"{min(r['psnr_tiled_vs_whole'] for r in rows):14.2f} "
          f"{mean('seam_tiled'):10.3f} {mean('seam_whole'):6.3f}", flush=True)


if __name__ == "__main__":
    main()
