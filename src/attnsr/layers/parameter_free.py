"""Parameter-free attention blocks (SPAN, Wan et al. 2024).

The attention map is not computed by a branch of its own: a symmetric activation of
the block's last convolution ``H`` *is* the map, ``V = sigmoid(H) - 0.5`` in (-0.5, 0.5),
and it gates the residual sum: ``out = (H + x) * V``. Features with a strong response
(edges, textures) pass, flat ones are suppressed, with no parameter spent on attention.

The activation ``sigmoid(H) - 0.5`` is odd (symmetric about the origin), so the map can
scale and flip a feature. :class:`ParameterFreeAttention` is the gate alone (also used by
DSCF/DSCLoRA, the NTIRE 2025 efficient-SR winner); its :meth:`~ParameterFreeAttention.gate`
``sigmoid(H)`` in (0, 1) is what ``attnsr explain`` shows. :class:`SPAB` is the block
around it (three re-parameterisable
:class:`~attnsr.layers.reparam.Conv3XC` with SiLU), keys ``c1_r``, ``c2_r``, ``c3_r`` as in
the official SPAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.reparam import Conv3XC

__all__ = ["SPAB", "ParameterFreeAttention"]


class ParameterFreeAttention(nn.Module):
    """``(f + x) * (sigmoid(f) - 0.5)``: no parameters, no keys.

    Shapes: ``f`` and ``x`` (B, C, H, W) -> (B, C, H, W); :meth:`gate` (B, C, H, W) in
    (0, 1), :meth:`weights` (B, C, H, W) in (-0.5, 0.5).
    """

    def gate(self, f: Tensor) -> Tensor:
        """``sigmoid(f)``: (B, C, H, W) in (0, 1)."""
        return torch.sigmoid(f)

    def weights(self, f: Tensor) -> Tensor:
        """The symmetric attention map ``sigmoid(f) - 0.5``: (B, C, H, W) in (-0.5, 0.5)."""
        return self.gate(f) - 0.5

    def forward(self, f: Tensor, x: Tensor) -> Tensor:
        return (f + x) * self.weights(f)


class SPAB(nn.Module):
    """Swift parameter-free attention block.

    ``a1 = silu(c1_r(x))``, ``h3 = c3_r(silu(c2_r(a1)))``, ``out = (h3 + x) * V(h3)``.

    Args:
        channels: C (in = mid = out, as in every official SPAN).
        gain: the Conv3XC expansion.
        fused: build the convs in their re-parameterised (inference) form.

    Shapes: ``x`` (B, C, H, W) -> ``(out, a1)``, both (B, C, H, W); SPAN concatenates the
    last block's ``a1``. The official block returns ``c1_r(x)`` *after* an in-place SiLU,
    so what it hands on is the activated map ``a1``; so does this one.
    """

    def __init__(self, *, channels: int, gain: int = 2, fused: bool = False) -> None:
        super().__init__()
        kw = {"in_channels": channels, "out_channels": channels, "gain": gain, "fused": fused}
        self.c1_r = Conv3XC(**kw)
        self.c2_r = Conv3XC(**kw)
        self.c3_r = Conv3XC(**kw)
        self.attn = ParameterFreeAttention()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a1 = F.silu(self.c1_r(x))
        h3 = self.c3_r(F.silu(self.c2_r(a1)))
        return self.attn(h3, x), a1
