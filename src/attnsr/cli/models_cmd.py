"""``attnsr models``: every registered model with its size and cost, and the bundled weights.

Parameters are counted at the chosen scale (default x4). MACs (multiply-accumulates,
the papers' "Multi-Adds") are for a 1280x720 *output*, i.e. a (1280/s)x(720/s) input,
counted by :func:`attnsr.models.flops.count_flops`: the model is built on PyTorch's
``meta`` device and traced with ``FlopCounterMode`` (convolutions and matrix products;
no memory, no compute), falling back to a small real input scaled linearly in pixels.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import typer
from rich.table import Table

from attnsr.cli.app import app, console, handle_errors

log = logging.getLogger(__name__)


def model_row(name: str, scale: int, flops: bool = True) -> dict[str, Any]:
    """One model's facts at ``scale``; params/MACs are None where the scale is unsupported."""
    import torch

    from attnsr.models.flops import count_flops, count_params, paper_lr_size
    from attnsr.models.registry import create_model, get_preset

    preset = get_preset(name)
    row: dict[str, Any] = {"name": name, "arch": preset.arch, "scales": list(preset.scales),
                           "description": preset.description, "params": None, "macs": None}
    if scale not in preset.scales:
        return row
    with torch.device("meta"):  # sizes only: no memory for the weights
        model = create_model(name, scale=scale)
    traits = model.traits()
    row.update(params=count_params(model), global_ops=traits.has_global_ops,
               multiple_of=traits.multiple_of)
    if flops:
        try:
            row["macs"] = count_flops(model, lr_size=paper_lr_size(scale))
        except Exception as exc:  # noqa: BLE001 - one model must not break the listing
            log.warning("%s: MACs not counted (%s)", name, exc)
    return row


def pretrained_rows() -> list[dict[str, Any]]:
    """The weights that are present (registry tags), with their measured numbers."""
    from attnsr.models.registry import list_pretrained

    rows = []
    for w in list_pretrained():
        results = w.results()
        rows.append({"name": w.name, "aliases": list(w.aliases), "preset": w.preset,
                     "scale": w.scale, "inputs": w.degradation,
                     "overrides": dict(w.overrides), "license": w.license,
                     "config": w.train_config, "description": w.description,
                     "set5_psnr": results.get("Set5", {}).get("psnr"),
                     "set14_psnr": results.get("Set14", {}).get("psnr")})
    return rows


def _human(n: int | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def models_table(rows: list[dict[str, Any]], scale: int) -> Table:
    from attnsr.models.flops import PAPER_OUTPUT_SIZE

    w, h = PAPER_OUTPUT_SIZE[1], PAPER_OUTPUT_SIZE[0]
    table = Table(title=f"Registered models (params and MACs at x{scale}; MACs for a "
                        f"{w}x{h} output)")
    for col in ("Name", "Arch", "Params", "MACs", "Scales", "Description"):
        table.add_column(col, justify="right" if col in ("Params", "MACs") else "left")
    for r in rows:
        table.add_row(r["name"], r["arch"], _human(r["params"]), _human(r["macs"]),
                      ",".join(str(s) for s in r["scales"]), r["description"])
    return table


def pretrained_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Pretrained weights (--model NAME or ALIAS; bundled, offline)")
    for col in ("Name", "Alias", "Scale", "Inputs", "Set5 / Set14 PSNR", "Description"):
        table.add_column(col, no_wrap=col in ("Name", "Alias", "Set5 / Set14 PSNR"))
    for r in rows:
        psnr = (f"{r['set5_psnr']:.2f} / {r['set14_psnr']:.2f}"
                if r["set5_psnr"] is not None and r["set14_psnr"] is not None else "-")
        table.add_row(r["name"], ", ".join(r["aliases"]), f"x{r['scale']}", r["inputs"],
                      psnr, r["description"])
    return table


@app.command("models")
@handle_errors
def models_command(
    scale: int = typer.Option(4, "--scale", "-s", help="Scale at which params/MACs are counted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    flops: bool = typer.Option(True, "--flops/--no-flops", help="Count MACs (a few seconds)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Only the models that have "
                                    "weights (what upscale/eval/explain accept by name)."),
) -> None:
    """List every registered model (params, MACs, scales) and the pretrained weights."""
    bundled = pretrained_rows()
    if pretrained:
        if as_json:
            typer.echo(json.dumps({"pretrained": bundled}, indent=2))
        else:
            console.print(pretrained_table(bundled))
        return

    from attnsr.models.registry import list_models

    rows = [model_row(name, scale, flops) for name in list_models()]
    if as_json:
        from attnsr.models.flops import PAPER_OUTPUT_SIZE

        out = {"scale": scale, "macs_output_size": [PAPER_OUTPUT_SIZE[1], PAPER_OUTPUT_SIZE[0]],
               "models": rows, "pretrained": bundled}
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(models_table(rows, scale))
    if bundled:
        console.print(pretrained_table(bundled))
