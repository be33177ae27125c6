"""Average the weights of trained checkpoints of one network (a "model soup", Wortsman et
al. 2022): runs fine-tuned from the same weights usually sit in one basin, where the mean
of their weights is a network about as good as each and often a little better.

    python tools/average_weights.py runs/attnsr_lite32_real_x4_rep_de \\
        runs/attnsr_lite32_real_x4_rep_d runs/attnsr_lite32_real_x4_rep_e

Writes ``OUT/config.json`` + ``OUT/model.safetensors`` (``model.init_from`` or ``attnsr
eval --model OUT`` read it). The sources must have the same architecture and config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from attnsr.checkpoint import save_pretrained
from attnsr.resolver import load_pretrained


def average_states(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (float tensors
    averaged in float64, then cast back; other tensors taken from the first)."""
    if not states:
        raise ValueError("no state dicts to average")
    keys = set(states[0])
    for i, state in enumerate(states[1:], start=1):
        if set(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"source {i}: its tensors differ from source 0's")
    return {k: (torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype)
                if v.is_floating_point() else v)
            for k, v in states[0].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for config.json + model.safetensors")
    parser.add_argument("sources", nargs="+", help="run dirs, checkpoints or bundled names")
    args = parser.parse_args()
    descs = [load_pretrained(s) for s in args.sources]
    configs = {repr(getattr(d.model, "config", None)) for d in descs}
    if len({type(d.model) for d in descs}) != 1 or len(configs) != 1:
        parser.error("the sources are not one architecture with one config")
    try:
        mean = average_states([d.model.state_dict() for d in descs])
    except ValueError as exc:
        parser.error(str(exc))
    descs[0].model.load_state_dict(mean)
    save_pretrained(descs[0], args.out)  # the first source's name in the header
    print(f"wrote {args.out} (the mean of {len(descs)} checkpoints)")


if __name__ == "__main__":
    main()
