"""Pixel-shuffle upsamplers.

:class:`Upsample` keeps the EDSR/RCAN layout (``0`` conv, ``1`` shuffle, ``2`` conv,
``3`` shuffle ...) so official ``tail.0.*`` keys load unchanged; SwinIR's classical
upsampler uses the same layout. :class:`UpsampleOneStep` is the single conv + shuffle
of lightweight models (IMDN, RLFN, SwinIR-light): key ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor, nn

from attnsr.errors import ConfigError


def upsample_steps(scale: int) -> list[int]:
    """The pixel-shuffle factors that make up ``scale``: 2^n -> [2]*n, 3 -> [3]."""
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    if scale == 3:
        return [3]
    raise ConfigError(f"scale {scale} is not supported (use 2, 3, 4 or 8)")


class Upsample(nn.Sequential):
    """Progressive upsampler: for each factor r, conv3x3(C -> r^2 C) then PixelShuffle(r).

    Args:
        scale: 2, 3, 4 or 8.
        channels: C (kept through the upsampler).

    Shapes: (B, C, H, W) -> (B, C, sH, sW).
    """

    def __init__(self, *, scale: int, channels: int) -> None:
        layers: list[nn.Module] = []
        for r in upsample_steps(scale):
            layers += [nn.Conv2d(channels, r * r * channels, 3, padding=1), nn.PixelShuffle(r)]
        super().__init__(*layers)


class UpsampleOneStep(nn.Sequential):
    """One conv3x3(C -> s^2 * out) then PixelShuffle(s), for any integer scale.

    Args:
        scale: s >= 1.
        in_channels: C.
        out_channels: channels of the output image (3 for RGB).

    Shapes: (B, C, H, W) -> (B, out, sH, sW).
    """

    def __init__(self, *, scale: int, in_channels: int, out_channels: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, scale * scale * out_channels, 3, padding=1),
            nn.PixelShuffle(scale),
        )


def detect_upsample_scale(
    state_dict: Mapping[str, Tensor], prefix: str, channels: int
) -> int | None:
    """Scale of an :class:`Upsample` stored under ``prefix`` (e.g. ``"tail.0."``).

    Reads the conv shapes: one conv with ``9C`` outputs is x3, ``n`` convs with
    ``4C`` outputs are x2^n. None if the keys do not look like an upsampler.
    """
    n = 0
    while f"{prefix}{2 * n}.weight" in state_dict:
        n += 1
    if n == 0:
        return None
    out = int(state_dict[f"{prefix}0.weight"].shape[0])
    if n == 1 and out == 9 * channels:
        return 3
    return 2**n if out == 4 * channels else None


def detect_one_step_scale(
    state_dict: Mapping[str, Tensor], key: str, out_channels: int
) -> int | None:
    """Scale of an :class:`UpsampleOneStep` from its conv ``key`` (``out * s^2`` outputs)."""
    if key not in state_dict:
        return None
    s = math.isqrt(int(state_dict[key].shape[0]) // out_channels)
    return s if s * s * out_channels == int(state_dict[key].shape[0]) else None
