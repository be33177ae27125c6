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

from attnsr.checkpoint import blend_state_dicts, save_pretrained
from attnsr.resolver import load_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for config.json + model.safetensors")
    parser.add_argument("sources", nargs="+", help="run dirs, checkpoints or bundled names")
    args = parser.parse_args()
    descs = [load_pretrained(s) for s in args.sources]
    configs = {repr(getattr(d.model, "config", None)) for d in descs}
    if len({type(d.model) for d in descs}) != 1 or len(configs) != 1:
        parser.error("the sources are not one architecture with one config")
    mean = blend_state_dicts([d.model.state_dict() for d in descs],
                             [1.0 / len(descs)] * len(descs))
    descs[0].model.load_state_dict(mean)
    save_pretrained(descs[0], args.out)  # the first source's name in the header
    print(f"wrote {args.out} (the mean of {len(descs)} checkpoints)")


if __name__ == "__main__":
    main()
