"""Copy a finished (or paused) training run into the package as bundled weights.

    python tools/ship_weights.py RUN_DIR NAME --config configs/attnsr_lite_x4.yaml \
        --command "attnsr train ... --until 5000" \
        [--previous STAGE_RUN CONFIG "COMMAND" ...]

``--previous`` names an earlier stage whose weights started this run (``model.init_from``):
its iterations and wall time count towards the totals on the model card.

Writes ``src/attnsr/weights/NAME/{config.json, model.safetensors, training.json}``;
``benchmarks/model_table.py`` then measures them and writes ``results.json`` and
``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def training_facts(run: Path) -> dict:
    """Iteration, wall time and last validation of a run, from its metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("event") == "train"]
    vals = [r for r in records if r.get("event") == "val"]
    # Sum the gaps between log lines, leaving out pauses between sittings (> 10 min).
    times = [r["time"] for r in train]
    wall = sum(b - a for a, b in zip(times, times[1:], strict=False) if b - a < 600)
    return {"iterations": train[-1]["iter"] if train else 0,
            "wall_time_hours": round(wall / 3600, 2),
            "final_train_loss": train[-1]["loss"] if train else None,
            "last_validation": vals[-1] if vals else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--config", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--hardware", default=f"{platform.processor() or platform.machine()} CPU, "
                    f"{torch.get_num_threads()} threads")
    ap.add_argument("--init-from", default="", help="What the run was initialised from.")
    ap.add_argument("--previous", nargs=3, action="append", default=[],
                    metavar=("RUN", "CONFIG", "COMMAND"),
                    help="An earlier stage this run continues (repeat, oldest first).")
    args = ap.parse_args()
    dest = ROOT / "src/attnsr/weights" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy2(args.run / f, dest / f)
    facts = {"name": args.name, "config": args.config, "command": args.command,
             "hardware": args.hardware, "init_from": args.init_from,
             "data": "T91 + General100 + BSD200 (391 HR images), MATLAB-bicubic LR",
             "validation": "Set5 + Set14", **training_facts(args.run)}
    if args.previous:
        stages = [{"config": cfg, "command": cmd, **training_facts(Path(run))}
                  for run, cfg, cmd in args.previous]
        stages.append({"config": args.config, "command": args.command,
                       **training_facts(args.run)})
        for stage in stages:
            stage.pop("last_validation")
            stage.pop("final_train_loss")
        facts["stages"] = stages
        facts["iterations"] = sum(s["iterations"] for s in stages)
        facts["wall_time_hours"] = round(sum(s["wall_time_hours"] for s in stages), 2)
    (dest / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
