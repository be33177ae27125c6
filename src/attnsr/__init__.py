"""attnsr: attention-based single-image super-resolution.

Public API::

    import attnsr
    attnsr.list_models(pretrained=True)                 # what has weights
    runner = attnsr.resolve("attnsr-x4")                # name/file -> Runner (the one path)
    sr = runner(lr)                                     # (B,3,H,W) [0,1] -> (B,3,4H,4W)
    sr = attnsr.upscale("photo.png", scale=4)           # path/PIL/numpy/tensor, tiled
    attnsr.upscale_video("clip.mp4", "clip_x2.mp4", scale=2)  # video/animation, streamed
    model = attnsr.create_model("rcan_small", scale=4)  # an architecture, random weights
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily so `import attnsr` stays light.
_API = {
    "create_model": "attnsr.models.registry",
    "list_models": "attnsr.models.registry",
    "list_pretrained": "attnsr.models.registry",
    "get_pretrained": "attnsr.models.registry",
    "resolve": "attnsr.resolver",
    "load_pretrained": "attnsr.resolver",
    "Runner": "attnsr.runner",
    "describe": "attnsr.runner",
    "ModelDescriptor": "attnsr.descriptor",
    "save_pretrained": "attnsr.checkpoint",
    "upscale": "attnsr.inference.upscale",
    "upscale_video": "attnsr.inference.video",
    "upscale_frames": "attnsr.inference.video",
    "AttnsrError": "attnsr.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'attnsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
