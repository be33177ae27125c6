"""Final export of a trained model as an attnsr checkpoint directory
(``config.json`` + ``model.safetensors``, see docs/design.md "Checkpoints (ours)")."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from attnsr.checkpoint import save_pretrained


def export_weights(model: nn.Module, run_dir: Path, preset: str = "") -> None:
    """Write ``model`` (an ``SRModel``) to ``run_dir`` so that ``attnsr eval/upscale
    --model run_dir`` can load it; the header names the ``preset`` it was trained as
    (``name`` and ``preset``; the architecture's config is the real one, overrides
    included)."""
    extra = {"preset": preset} if preset else None
    save_pretrained(model, run_dir, name=preset or None, extra_metadata=extra)
