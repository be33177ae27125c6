"""Parameter and multiply-accumulate (MAC) counting.

Papers report "Multi-Adds" for a 1280x720 *output*, i.e. an LR input of
``1280/s x 720/s``; :func:`paper_lr_size` gives it. MACs are counted with
:class:`torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per MAC for
convolutions and matrix products; elementwise ops, pooling and interpolation are not
counted, as in the papers' tools). The model is rebuilt on the ``meta`` device when it
can be, so even RCAN at 320x180 costs no memory and no compute; otherwise it runs for
real on a small input and the count is scaled linearly in the number of pixels
(exact for fully convolutional models, an estimate for global attention).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)

PAPER_OUTPUT_SIZE = (720, 1280)  # (H, W) of the HR image behind published Multi-Adds
_FALLBACK_SIDE = 48  # LR side used when the model cannot run on the meta device


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (buffers excluded), optionally only trainable ones."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def paper_lr_size(scale: int, output_size: tuple[int, int] = PAPER_OUTPUT_SIZE) -> tuple[int, int]:
    """LR (h, w) whose x``scale`` output is ``output_size`` (1280x720 -> 180x320 at x4)."""
    return output_size[0] // scale, output_size[1] // scale


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of one forward of ``model`` on ``x`` (FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // 2


def _meta_copy(model: nn.Module) -> nn.Module | None:
    """``model`` rebuilt on the meta device (from its config if registered)."""
    arch, config = getattr(model, "arch_name", ""), getattr(model, "config", None)
    try:
        if arch and config is not None:
            from attnsr.models.registry import build_model

            with torch.device("meta"):
                return build_model(arch, config).eval()
        return copy.deepcopy(model).to("meta").eval()
    except Exception as exc:  # noqa: BLE001 - any failure means: count on real tensors
        log.debug("meta copy of %s failed: %s", type(model).__name__, exc)
        return None


def _padded(model: nn.Module, h: int, w: int) -> tuple[int, int]:
    """(h, w) padded as the descriptor would (window multiple, minimum size)."""
    traits: Any = model.traits() if hasattr(model, "traits") else None
    if traits is None:
        return h, w
    m, lo = traits.multiple_of, traits.min_size
    return max(h + (-h) % m, lo), max(w + (-w) % m, lo)


def count_flops(model: nn.Module, lr_size: tuple[int, int] = (180, 320)) -> int:
    """Multiply-accumulates of one forward pass on a ``(1, C, h, w)`` LR input.

    The input is padded as :class:`~attnsr.runner.Runner` pads it.
    Runs on the meta device when possible; otherwise on a real ``48 x 48`` input,
    scaled by the pixel ratio (see the module docstring).
    """
    h, w = _padded(model, *lr_size)
    c = int(getattr(getattr(model, "config", None), "in_channels", 3))
    meta = _meta_copy(model)
    if meta is not None:
        try:
            return _macs(meta, torch.empty(1, c, h, w, device="meta"))
        except Exception as exc:  # noqa: BLE001 - fall back to a small real input
            log.debug("meta forward of %s failed: %s", type(model).__name__, exc)
    side_h, side_w = _padded(model, min(h, _FALLBACK_SIDE), min(w, _FALLBACK_SIDE))
    p = next(model.parameters(), None)
    x = torch.rand(1, c, side_h, side_w, device=p.device if p is not None else "cpu")
    was_training = model.training
    try:
        return round(_macs(model.eval(), x) * (h * w) / (side_h * side_w))
    finally:
        model.train(was_training)
