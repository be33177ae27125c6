"""Narrow a trained ``attnsr_net`` (:func:`attnsr.models.attnsr_net.prune`): keep the
``--channels`` features that carry the most on LR patches of training images, as the start
of a fine-tuning run (``model.init_from`` pointing at the directory written here).

    python tools/prune_attnsr.py training/attnsr_lite8_x4_scaleaug \\
        runs/attnsr_lite32_x4_pruned --channels 32 --images ../shared/data/train/General100

    python tools/prune_attnsr.py training/attnsr_lite8_real_x4_photo \\
        runs/attnsr_lite32_real_x4_pruned --like training/attnsr_lite8_x4_scaleaug ...

The LR patches are MATLAB-bicubic downscales of centre crops (the clean models' inputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from attnsr.checkpoint import save_pretrained
from attnsr.data.io import read_image
from attnsr.data.resize import imresize
from attnsr.models.attnsr_net import AttnSRNet, prune
from attnsr.resolver import load_pretrained


def lr_patches(folder: Path, scale: int, size: int, limit: int) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]: MATLAB-bicubic LR of the centre crops of the first
    ``limit`` RGB images in ``folder`` that are large enough."""
    out = []
    for path in sorted(folder.iterdir()):
        if len(out) == limit:
            break
        try:
            px = read_image(path).pixels
        except Exception:  # noqa: BLE001 - not an image: skip
            continue
        hs = size * scale
        if px.ndim != 3 or px.shape[2] != 3 or min(px.shape[:2]) < hs:
            continue
        y, x = (px.shape[0] - hs) // 2, (px.shape[1] - hs) // 2
        crop = np.ascontiguousarray(px[y:y + hs, x:x + hs], np.float32)
        out.append(np.clip(imresize(crop, 1.0 / scale), 0, 1))
    if not out:
        raise SystemExit(f"{folder}: no RGB image of at least {size * scale} px")
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="trained attnsr_net: run dir, checkpoint or bundled name")
    parser.add_argument("out", type=Path, help="directory for config.json + model.safetensors")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--images", type=Path, required=True, help="folder of HR images")
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--size", type=int, default=48, help="LR patch side")
    parser.add_argument("--like", help="choose the channels by this network's importance "
                        "(the clean weights when narrowing their real-world fine-tune, so "
                        "that --denoise can still interpolate the two)")
    args = parser.parse_args()
    model = load_pretrained(args.source).model
    if not isinstance(model, AttnSRNet):
        parser.error(f"{args.source}: not an attnsr_net model")
    lr = lr_patches(args.images, model.config.scale, args.size, args.patches)
    reference = load_pretrained(args.like).model.eval() if args.like else None
    small = prune(model.eval(), args.channels, lr, reference).eval()
    with torch.inference_mode():
        ref, out = model(lr), small(lr)
    psnr = (10 * torch.log10(1 / (ref - out).pow(2).mean())).item()
    save_pretrained(small, args.out)
    print(f"{args.out}: channels {model.config.channels} -> {args.channels}, "
          f"output vs the source on {len(lr)} patches: {psnr:.2f} dB")


if __name__ == "__main__":
    main()
