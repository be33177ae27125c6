"""Parameter-free attention blocks (SPAN, Wan et al. 2024).

The attention map is not computed by a branch of its own: a symmetric activation of
the block's last convolution ``H`` *is* the map, ``V = sigmoid(H) - 0.5`` in (-0.5, 0.5),
and it gates the residual sum: ``out = (H + x) * V``. Features with a strong response
(edges, textures) pass, flat ones are suppressed, with no parameter spent on attention.

The gate alone is :class:`~attnsr.layers.symmetric_gate.ParameterFreeAttention`
(re-exported here); :class:`SPAB` is the block around it (three re-parameterisable
:class:`~attnsr.layers.reparam.Conv3XC` with SiLU), keys ``c1_r``, ``c2_r``, ``c3_r`` as in
the official SPAN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.reparam import Conv3XC
from attnsr.layers.symmetric_gate import ParameterFreeAttention

__all__ = ["SPAB", "ParameterFreeAttention"]


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
