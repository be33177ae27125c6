"""int8 vs fp32 (onnxruntime, CPU): PSNR change on Set5/Set14 and the speed ratio.

The model (default: the bundled ``attnsr-x4``; a registered preset gets random
weights, which is only good for the speed column and the machinery) is exported to
ONNX fp32 and quantized to int8 (QDQ, per-channel weights, first/last conv in float;
``--all-int8`` also quantizes those) with activation ranges calibrated on the first
``--calib-images`` training images (``data/train/General100``, downscaled by the scale:
never the test sets). Both graphs are evaluated with the papers' protocol
(``attnsr.evaluate``: Y channel, shave = scale) and timed in the same run on one LR
input, interleaved, median of ``--runs``.

    python benchmarks/quantization.py --model attnsr-x4 --scale 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="attnsr-x4")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--calib-patch", type=int, default=96)
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--all-int8", action="store_true", help="Quantize first/last conv too.")
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], help="LR H W for timing.")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def _time_pair(sessions: dict[str, Any], size: tuple[int, int], runs: int) -> dict[str, float]:
    """Median seconds per session, runs interleaved so machine load hits both alike."""
    x = np.random.default_rng(0).random((1, 3, *size), np.float32)
    for s in sessions.values():
        s.run(None, {"lr": x})  # warm-up
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {"lr": x})
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _psnr_table(models: dict[str, Any], sets: list[Path], scale: int) -> dict[str, dict]:
    from attnsr.evaluate import evaluate

    out: dict[str, dict] = {}
    for name, model in models.items():
        report = evaluate(model, sets, [scale], name=name)
        if report.errors:
            raise SystemExit(f"evaluation errors: {report.errors[0].message}")
        out[name] = {s.set: round(s.psnr, 4) for s in report.summaries()}
    return out


def main() -> None:
    args = _parse()
    from attnsr.export.onnx import export_onnx
    from attnsr.export.quantize import QuantizeConfig, calibration_inputs, quantize_onnx
    from attnsr.export.runtime import load_onnx
    from attnsr.resolver import load_pretrained

    desc = load_pretrained(args.model, scale=args.scale)
    trained = Path(desc.source).exists()
    cfg = QuantizeConfig(method=args.method, keep_first_last=not args.all_int8,
                         patch=args.calib_patch, max_images=args.calib_images)
    calib = calibration_inputs(args.data / "train" / "General100", scale=args.scale,
                               patch=cfg.patch, max_images=cfg.max_images)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(desc, Path(tmp) / "fp32.onnx")
        int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx", calib, cfg)
        sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
        runtimes = {"fp32": load_onnx(fp32, threads=args.threads),
                    "int8": load_onnx(int8, threads=args.threads)}
        sets = [args.data / "benchmark" / s for s in args.sets]
        psnr = _psnr_table({"torch": desc, **runtimes}, sets, args.scale)
        secs = _time_pair({k: v.model.session for k, v in runtimes.items()},
                          tuple(args.size), args.runs)
    result = {
        "model": args.model, "scale": args.scale, "weights": "trained" if trained else "random",
        "quantization": {"method": cfg.method, "first_last_float": cfg.keep_first_last,
                         "calibration_images": len(calib)},
        "psnr": psnr,
        "psnr_change_db": {s: round(psnr["int8"][s] - psnr["fp32"][s], 4) for s in psnr["fp32"]},
        "seconds": {k: round(v, 4) for k, v in secs.items()},
        "speed_ratio_int8_over_fp32": round(secs["int8"] / secs["fp32"], 3),
        "file_bytes": sizes, "timing_input": list(args.size), "threads": args.threads,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
