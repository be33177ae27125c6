"""Deepen a trained ``attnsr_net`` without changing what it computes
(:func:`attnsr.models.attnsr_net.deepen`): new residual blocks start as the identity, so the
grown network's output equals the trained one's, and training (``model.init_from`` pointing
at the directory written here) lets them learn.

    python tools/grow_attnsr.py runs/attnsr_lite_x4_anneal runs/attnsr_lite8_x4_grown \\
        --insert-after 2 --insert-after 5

``--insert-after I`` puts one new block after old block ``I`` (0-based; repeatable).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attnsr.checkpoint import save_pretrained
from attnsr.models.attnsr_net import AttnSRNet, deepen
from attnsr.resolver import load_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="trained attnsr_net: run dir, checkpoint or bundled name")
    parser.add_argument("out", type=Path, help="directory for config.json + model.safetensors")
    parser.add_argument("--insert-after", type=int, action="append", required=True)
    parser.add_argument("--seed", type=int, default=0, help="init of the new blocks' conv1/gate")
    args = parser.parse_args()
    model = load_pretrained(args.source).model
    if not isinstance(model, AttnSRNet):
        parser.error(f"{args.source}: not an attnsr_net model")
    torch.manual_seed(args.seed)
    try:
        grown = deepen(model, args.insert_after).eval()
    except ValueError as exc:
        parser.error(str(exc))
    x = torch.rand(1, 3, 24, 24)
    with torch.inference_mode():
        diff = (grown(x) - model(x)).abs().max().item()
    if diff > 1e-5:
        raise SystemExit(f"grown model differs from the source by {diff:g}")
    save_pretrained(grown, args.out)
    print(f"{args.out}: n_blocks {model.config.n_blocks} -> {grown.config.n_blocks}, "
          f"max |difference| on a test input {diff:.1e}")


if __name__ == "__main__":
    main()
