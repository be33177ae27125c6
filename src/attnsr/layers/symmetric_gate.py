"""Parameter-free attention with a symmetric activation (SPAN, Wan et al. CVPRW 2024; reused
by DSCF/DSCLoRA, the NTIRE 2025 efficient-SR winner).

The last conv of a block produces features ``f``; with the block input ``x`` the output is
``(f + x) * (sigmoid(f) - 0.5)``. The attention map comes from the features themselves
(no weights of its own), and the activation ``sigmoid(f) - 0.5`` is odd (symmetric about
the origin), so it can scale and flip a feature: the map is in (-0.5, 0.5), not a (0, 1)
gate. :meth:`ParameterFreeAttention.gate` gives ``sigmoid(f)`` in (0, 1), which the
attention recorder (``attnsr explain``) shows; the map applied is ``gate - 0.5``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
