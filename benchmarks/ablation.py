"""Choose the default architecture by measurement: the same CPU training budget for each
candidate, then Set5/Set14 PSNR, parameters, MACs and CPU speed side by side.

Every candidate trains with the recipe of ``configs/attnsr_lite_x4.yaml`` (same data, batch,
patch, optimizer, learning rate, loss, EMA, seed) for the same number of CPU-seconds on one
thread: its iteration count is ``budget x`` its measured steps/second, and its cosine
schedule runs to that count, so each candidate finishes a whole schedule. That is the
measure the bundled model is chosen by (quality per CPU-second of training and of
inference). The iteration counts are printed, so ``--iters`` reproduces a run exactly.

    python benchmarks/ablation.py [--data ../shared/data] [--minutes 5] [--scale 4]
        [--models attnsr_lite attnsr_lite+attention=false pan ...]
        [--out docs/default_model.md] [--runs runs/ablation]
    python benchmarks/ablation.py --collect runs/ablation_a runs/ablation_b --out ...

Short budgets favour models that take many cheap steps; the published numbers of the
same models after ~10^6 steps on DIV2K are quoted beside them for that reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from attnsr.evaluate import evaluate
from attnsr.models.flops import count_flops, count_params
from attnsr.resolver import load_pretrained
from attnsr.train.config import TrainConfig, load_config, read_config_file
from attnsr.train.loop import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ["attnsr_lite", "attnsr_lite+attention=false", "pan", "rlfn_s", "imdn",
              "rcan_small", "swinir_light", "span_ntire", "bsrn_s", "safmn"]
# Published x4 Set5 / Set14 PSNR (trained on DIV2K, ~10x our data and ~100x our steps).
PUBLISHED = {"pan": (32.13, 28.61), "rlfn_s": (32.23, 28.61), "imdn": (32.21, 28.58),
             "swinir_light": (32.44, 28.77), "rcan_small": None, "attnsr_lite": None,
             "bsrn_s": (32.16, 28.62)}


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name[+key=value...]`` -> (preset name, config overrides), values read as YAML."""
    import yaml

    name, *pairs = spec.split("+")
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def recipe(model: str, scale: int, data: Path, run_dir: Path, iters: int,
           device: str = "cpu") -> dict:
    """The bundled model's x4 recipe with ``model`` (a spec, see :func:`parse_spec`)
    swapped in and ``iters`` steps."""
    name, overrides = parse_spec(model)
    return {
        "model": {"name": name, "overrides": overrides, "init_from": ""},
        "total_iters": iters, "scale": scale, "run_dir": str(run_dir),
        "data": {"root": str(data / "train"),
                 "sources": [{"hr_dir": "T91", "weight": 1.0},
                             {"hr_dir": "General100", "weight": 1.0},
                             {"hr_dir": "BSD200", "weight": 2.0}]},
        "val": {"every": 0, "root": "", "sets": []},
        # warm-up: a tenth of the run at most, so short runs still reach the peak rate
        "schedule": {"warmup_iters": max(1, min(200, iters // 10))},
        "log": {"every": max(1, iters // 10), "tensorboard": False, "jsonl": True},
        "runtime": {"device": device, "threads": 1, "seed": 0,
                    "precision": "bf16" if device == "cuda" else "fp32",
                    "checkpoint_every": 10**9, "compile": False, "grad_clip": 0.0,
                    "nonfinite": "stop"},
    }


def config_for(model: str, scale: int, data: Path, run_dir: Path, iters: int,
               device: str = "cpu") -> TrainConfig:
    """``configs/attnsr_lite_x4.yaml`` with :func:`recipe`'s keys replaced."""
    values = read_config_file(ROOT / "configs" / "attnsr_lite_x4.yaml")
    for key, value in recipe(model, scale, data, run_dir, iters, device).items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return load_config(base=values)


def clock(device: str) -> Any:
    """The clock budgets are counted in: the process's CPU time on a CPU (one thread, so
    other jobs on the machine do not change the budget), the wall clock on a GPU."""
    return time.process_time if device == "cpu" else time.perf_counter


def steps_per_second(model: str, scale: int, data: Path, run_dir: Path, device: str = "cpu",
                     steps: int = 20) -> float:
    """Optimizer steps per CPU-second of the real training step (data included), one
    thread. Timed with the process's CPU clock, not the wall clock, so candidates measured
    while other jobs share the machine still get the same budget of work."""
    trainer = Trainer(config_for(model, scale, data, run_dir, 10**6, device), resume=False,
                      progress=False)
    for i in range(5):  # warm-up
        trainer.train_step(i, *trainer.dataset[i])
    tick = clock(device)
    start = tick()
    for i in range(5, 5 + steps):
        trainer.train_step(i, *trainer.dataset[i])
    return steps / (tick() - start)


def mp_per_second(model: torch.nn.Module, scale: int, size: int = 128, runs: int = 3) -> float:
    """Output megapixels per CPU-second (one thread) of a (1, 3, size, size) forward,
    median of ``runs``."""
    x = torch.rand(1, 3, size, size)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(runs):
            start = time.process_time()
            model(x)
            times.append(time.process_time() - start)
    return (size * scale) ** 2 / 1e6 / statistics.median(times)


def run_candidate(model: str, args: argparse.Namespace, iters: int | None) -> dict:
    run_dir = args.runs / f"{model.replace('+', '_').replace('=', '-')}_x{args.scale}"
    rate = steps_per_second(model, args.scale, args.data, run_dir / "probe", args.device)
    n = iters or max(1, round(args.minutes * 60 * rate))
    print(f"{model}: {rate:.2f} steps/s -> {n} iterations", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    train(config_for(model, args.scale, args.data, run_dir, n, args.device), resume=False,
          progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    desc = load_pretrained(run_dir)
    bench = args.data / "benchmark"
    report = evaluate(desc, [bench / "Set5", bench / "Set14"], [args.scale], name=model)
    sets = {s.set: {"psnr": round(s.psnr, 3), "ssim": round(s.ssim, 4)}
            for s in report.summaries()}
    net = desc.model.eval()
    return {"model": model, "iters": n, "minutes": args.minutes,
            "train_steps_per_s": round(rate, 3),
            "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
            "params": count_params(net),
            "macs_1280x720": count_flops(net, (720 // args.scale, 1280 // args.scale)),
            "cpu_mp_per_s_128": round(mp_per_second(net, args.scale), 3),
            "published": PUBLISHED.get(model), **sets}


def markdown(rows: list[dict]) -> str:
    """The table, best Set5 PSNR first."""
    head = ("| model | params | MACs (1280x720 out) | CPU MP/s (1 thread, 128² in) | "
            "train steps/s | iterations | train CPU time | Set5 PSNR / SSIM | "
            "Set14 PSNR / SSIM | published Set5 / Set14 |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in sorted(rows, key=lambda r: -r["Set5"]["psnr"]):
        pub = "{:.2f} / {:.2f}".format(*r["published"]) if r["published"] else "-"
        lines.append(
            f"| `{r['model']}` | {r['params']:,} | {r['macs_1280x720'] / 1e9:.2f}G | "
            f"{r['cpu_mp_per_s_128']:.2f} | {r['train_steps_per_s']:.2f} | {r['iters']:,} | "
            f"{r.get('train_cpu_s', r['train_wall_s']):.0f} s | "
            f"{r['Set5']['psnr']:.2f} / {r['Set5']['ssim']:.4f} | "
            f"{r['Set14']['psnr']:.2f} / {r['Set14']['ssim']:.4f} | {pub} |")
    return "\n".join(lines) + "\n"


def write_between_markers(path: Path, text: str, marker: str) -> None:
    """Replace what lies between ``<!-- marker:start/end -->`` in ``path`` (or write it)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        i, j = old.index(start) + len(start), old.index(end)
        text = old[:i] + "\n" + text + old[j:]
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder with train/ and benchmark/")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="CPU training budget per candidate (one thread)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=CANDIDATES)
    parser.add_argument("--iters", type=int, nargs="*",
                        help="fixed iteration counts, one per model (reproduces a run)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablation")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the candidates train (budgets are then GPU-seconds)")
    parser.add_argument("--collect", type=Path, nargs="+", metavar="RUNS",
                        help="only write the table from the ablation.json of earlier runs "
                             "(e.g. two halves run side by side on two cores)")
    parser.add_argument("--out", type=Path,
                        help="markdown file: the table goes between its --marker comments")
    parser.add_argument("--marker", default="ablation-table",
                        help="<!-- MARKER:start --> ... <!-- MARKER:end --> in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.iters and len(args.iters) != len(args.models):
        parser.error("--iters needs one count per model")
    rows: list[dict] = []
    if args.collect:
        for runs in args.collect:
            rows += json.loads((runs / "ablation.json").read_text())
        for r in rows:  # published figures added since the run
            r["published"] = r.get("published") or PUBLISHED.get(r["model"])
    else:
        for i, model in enumerate(args.models):
            rows.append(run_candidate(model, args, args.iters[i] if args.iters else None))
            print(json.dumps(rows[-1]), flush=True)
            (args.runs / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    print(table)
    if args.out:
        write_between_markers(args.out, table, args.marker)


if __name__ == "__main__":
    main()
