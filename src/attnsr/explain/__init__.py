"""Explainability: what the attention blocks look at, and which input pixels matter.

- :class:`AttentionRecorder` (``capture``): forward pre-hooks that record channel
  weights, spatial/pixel gates and the attention distribution of a query pixel, for
  every attention layer of :mod:`attnsr.layers` in any model, outputs untouched.
- :func:`local_attribution_map` (``lam``): Local Attribution Maps (Gu & Dong, CVPR 2021)
  with the diffusion index.
- ``figures``: matplotlib (Agg) figures of both.
"""

from attnsr.explain.capture import KINDS, AttentionRecorder, CapturedMap, register_capture
from attnsr.explain.lam import LAMConfig, LAMResult, diffusion_index, gini, local_attribution_map

__all__ = [
    "KINDS",
    "AttentionRecorder",
    "CapturedMap",
    "LAMConfig",
    "LAMResult",
    "diffusion_index",
    "gini",
    "local_attribution_map",
    "register_capture",
]
