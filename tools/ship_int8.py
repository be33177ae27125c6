"""Build the ``--fast`` int8 graph of bundled weights and check its loss (release time).

    python tools/ship_int8.py attnsr-x4 attnsr-x3 [--method percentile] [--keep-first-last]
    python tools/ship_int8.py --all

For each name: calibrate on the first ``--calib-images`` training images
(``../shared/data/train/General100``, downscaled by the scale with MATLAB bicubic,
central 96x96 patches cut to the smallest one's size: never the test sets), write
``src/attnsr/weights/<files>/model.int8.onnx`` (:func:`attnsr.export.fast.build_int8`:
the weights' SHA-256 in its metadata), then
evaluate fp32 onnxruntime and int8 on Set5/Set14 (papers' protocol: Y channel, shave =
scale) and write the PSNR change to ``int8.json`` beside it. A model losing more than
``--max-loss`` dB on either set is reported and the tool exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from attnsr.evaluate import evaluate
from attnsr.export.fast import INT8_FILE, build_int8, fast_runner
from attnsr.export.onnx import export_onnx
from attnsr.export.quantize import calibration_inputs
from attnsr.export.runtime import load_onnx
from attnsr.fs import atomic_write
from attnsr.models import registry
from attnsr.resolver import load_pretrained

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _psnr(model: object, sets: list[Path], scale: int, name: str) -> dict[str, float]:
    report = evaluate(model, sets, [scale], name=name)
    if report.errors:
        raise SystemExit(f"evaluation errors: {report.errors[0].message}")
    return {s.set: round(s.psnr, 4) for s in report.summaries()}


def ship(tag: registry.PretrainedTag, args: argparse.Namespace) -> dict:
    calib = calibration_inputs(args.data / "train" / "General100", scale=tag.scale,
                               patch=96, max_images=args.calib_images)
    side = min(min(a.shape[-2:]) for a in calib)  # percentile/entropy need one shape
    calib = [np.ascontiguousarray(a[..., :side, :side]) for a in calib]
    build_int8(tag, calib, method=args.method, keep_first_last=args.keep_first_last)
    sets = [args.data / "benchmark" / s for s in ("Set5", "Set14")]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = load_onnx(export_onnx(load_pretrained(tag.name), Path(tmp) / "fp32.onnx"))
        ref = _psnr(fp32, sets, tag.scale, "fp32")
    got = _psnr(fast_runner(tag.name), sets, tag.scale, "int8")
    result = {"name": tag.name, "method": args.method,
              "first_last_float": args.keep_first_last, "calibration_images": len(calib),
              "calibration_set": "General100", "psnr_fp32": ref, "psnr_int8": got,
              "change_db": {s: round(got[s] - ref[s], 4) for s in ref}}
    with atomic_write(tag.directory / "int8.json") as tmp_path:
        tmp_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every bundled weight")
    p.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--keep-first-last", action="store_true", help="first/last conv in float")
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--max-loss", type=float, default=0.1)
    args = p.parse_args()
    tags = (registry.list_pretrained() if args.all
            else [registry.get_pretrained(n) for n in args.names])
    if not tags or any(t is None for t in tags):
        names = ", ".join(registry.list_models(pretrained=True))
        raise SystemExit(f"name bundled weights ({names}) or --all")
    worst = 0.0
    for tag in tags:
        r = ship(tag, args)
        worst = max(worst, *(-v for v in r["change_db"].values()))
        print(f"{tag.name:22s} {tag.directory / INT8_FILE}: {json.dumps(r['change_db'])}",
              flush=True)
    if worst > args.max_loss:
        print(f"loss {worst:.3f} dB exceeds --max-loss {args.max_loss}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
