"""Final export of a trained model as an attnsr checkpoint directory
(``config.json`` + ``model.safetensors``, see docs/design.md "Checkpoints (ours)")."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from attnsr.train.checkpointing import atomic_write_bytes


def export_weights(model: nn.Module, run_dir: Path, name: str = "") -> None:
    """Write ``model`` (an ``SRModel``) to ``run_dir`` so that ``attnsr eval/upscale
    --model run_dir`` can load it."""
    try:
        from attnsr.checkpoint import save_pretrained
    except ModuleNotFoundError:  # checkpoint module not there: write the same pair here
        _write_pair(model, run_dir, name)
        return
    save_pretrained(model, run_dir)


def _write_pair(model: nn.Module, run_dir: Path, name: str) -> None:
    from safetensors.torch import save

    from attnsr.models.registry import config_to_dict

    arch = getattr(model, "arch_name", type(model).__name__.lower())
    meta = {"format": "attnsr", "version": 1, "arch": arch, "name": name or arch,
            "config": config_to_dict(model.config)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / "model.safetensors",
                       save(tensors, metadata={"attnsr": json.dumps(meta)}))
    atomic_write_bytes(run_dir / "config.json", (json.dumps(meta, indent=2) + "\n").encode())
