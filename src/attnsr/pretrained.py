"""Bundled pretrained weights: trained by the attnsr project with ``attnsr train`` and
shipped inside the package (``attnsr/weights/<name>/``: ``config.json``,
``model.safetensors``, ``MODEL_CARD.md``), so upscaling works offline.

The list is explicit (no scanning of file names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True, kw_only=True)
class PretrainedWeights:
    """One set of bundled weights.

    Attributes:
        name: what users pass to ``load_pretrained`` / ``--model`` (``attnsr-x4``).
        preset: the registered model preset they were trained as.
        scale: upscaling factor.
        config: the training config under ``configs/`` that reproduces them.
        license: license of the weights.
    """

    name: str
    preset: str
    scale: int
    config: str
    license: str = "Apache-2.0"

    @property
    def directory(self) -> Path:
        return WEIGHTS_DIR / self.name

    @property
    def available(self) -> bool:
        d = self.directory
        return (d / "config.json").is_file() and (d / "model.safetensors").is_file()

    def card(self) -> dict[str, Any]:
        """Measured results saved beside the weights (``results.json``), if any."""
        path = self.directory / "results.json"
        return json.loads(path.read_text()) if path.is_file() else {}


_BUNDLED: dict[str, PretrainedWeights] = {
    w.name: w
    for w in (
        PretrainedWeights(name="attnsr-x2", preset="attnsr_lite", scale=2,
                          config="configs/attnsr_lite_x2.yaml"),
        PretrainedWeights(name="attnsr-x3", preset="attnsr_lite", scale=3,
                          config="configs/attnsr_lite_x3_anneal.yaml"),
        PretrainedWeights(name="attnsr-x4", preset="attnsr_lite", scale=4,
                          config="configs/attnsr_lite8_x4_scaleaug.yaml"),
    )
}


def list_pretrained(available_only: bool = True) -> list[PretrainedWeights]:
    """Bundled weights (by default only those whose files are present)."""
    return [w for w in _BUNDLED.values() if w.available or not available_only]


def get_pretrained(name: str) -> PretrainedWeights | None:
    return _BUNDLED.get(name)


def resolve(name: str) -> Path | None:
    """Directory holding ``config.json`` + ``model.safetensors`` for a bundled name."""
    w = _BUNDLED.get(name)
    return w.directory if w is not None and w.available else None


def default_model_for_scale(scale: int) -> str | None:
    """Name of the bundled default model for ``scale`` (None if not shipped)."""
    for w in _BUNDLED.values():
        if w.scale == scale and w.available:
            return w.name
    return None
