"""Inference: tiled forward passes (:mod:`~attnsr.inference.tiling`), the ``upscale`` API
(:mod:`~attnsr.inference.upscale`) and the file planning of ``attnsr upscale``
(:mod:`~attnsr.inference.jobs`, torch-free).

The torch-backed names load on first use, so importing a torch-free submodule (the CLI's
file planning) does not import torch."""

from __future__ import annotations

from typing import Any

_LAZY = {"TilePlan": "tiling", "plan_tiles": "tiling", "tiled_forward": "tiling",
         "Upscaler": "upscale", "upscale": "upscale"}

__all__ = ["TilePlan", "Upscaler", "plan_tiles", "tiled_forward", "upscale"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"attnsr.inference.{_LAZY[name]}"), name)
        globals()[name] = value  # over the submodule that the import bound to ``upscale``
        return value
    raise AttributeError(f"module 'attnsr.inference' has no attribute {name!r}")
