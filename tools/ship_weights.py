"""Copy a finished (or paused) training run into the package as bundled weights.

    python tools/ship_weights.py RUN_DIR NAME --config configs/attnsr_lite_x4.yaml \
        --command "attnsr train ... --until 5000" \
        [--previous STAGE_RUN CONFIG "COMMAND" ...]

``--previous`` names an earlier stage whose weights started this run (``model.init_from``):
its iterations and wall time count towards the totals on the model card.

NAME is a registered pretrained name or alias (``attnsr-x4``, ``attnsr_lite.real_x4``:
``attnsr models --pretrained``). Writes ``src/attnsr/weights/<files>/{config.json,
model.safetensors, training.json}`` with a header naming the tag and its preset, after
checking that the run's network is the preset with the tag's overrides;
``benchmarks/model_table.py`` then measures them and writes ``results.json`` and
``MODEL_CARD.md``, and ``tools/ship_int8.py NAME`` rebuilds the ``--fast`` int8 graph
(``attnsr upscale --fast`` refuses a graph made from other weights).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from attnsr.checkpoint import load_checkpoint, save_pretrained
from attnsr.config import to_dict
from attnsr.models.registry import PretrainedTag, get_pretrained, preset_config

ROOT = Path(__file__).resolve().parents[1]


def write_weights(run: Path, tag: PretrainedTag) -> Path:
    """Save the run's weights as ``tag`` (header: name, preset, tag, aliases); the network
    must be the tag's preset with its overrides."""
    model = load_checkpoint(run, scale=tag.scale).model
    expected = preset_config(tag.preset, tag.scale, **tag.overrides)
    if to_dict(model.config) != to_dict(expected):
        raise SystemExit(f"{run}: config {to_dict(model.config)} is not {tag.name}'s "
                         f"(preset {tag.preset} with {dict(tag.overrides)})")
    meta = {"preset": tag.preset, "tag": tag.tag, "aliases": list(tag.aliases),
            "overrides": dict(tag.overrides), "degradation": tag.degradation}
    return save_pretrained(model, tag.directory, name=tag.name, extra_metadata=meta)


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
    ap.add_argument("--data", default="T91 + General100 + BSD200 (391 HR images), "
                    "MATLAB-bicubic LR", help="What the network was trained on.")
    ap.add_argument("--validation", default="Set5 + Set14")
    args = ap.parse_args()
    tag = get_pretrained(args.name)
    if tag is None:
        raise SystemExit(f"{args.name}: not a registered pretrained name (register it in "
                         "its architecture's module first)")
    dest = write_weights(args.run, tag)
    facts = {"name": tag.aliases[0] if tag.aliases else tag.name, "tag": tag.name,
             "config": args.config, "command": args.command,
             "hardware": args.hardware, "init_from": args.init_from,
             "data": args.data, "validation": args.validation, **training_facts(args.run)}
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
