"""Pixels as tokens, for the transformer models (SwinIR, HiT-SR): the layout changes
between feature maps and token sequences, the patch embedding, the residual groups of
blocks and the deep-feature pass through them, the official initialisation, and the
block count of a residual-group checkpoint."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from torch import Tensor, nn


def to_tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: Tensor, x_size: tuple[int, int]) -> Tensor:
    """``(B, H*W, C)`` -> ``(B, C, H, W)`` with ``x_size = (H, W)``."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, *x_size)


class PatchEmbed(nn.Module):
    """Pixels as tokens (patch size 1): ``(B, C, H, W) -> (B, H*W, C)``, then LayerNorm."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(to_tokens(x))


class TokenBlocks(nn.Module):
    """Blocks applied in turn to tokens ``(B, H*W, C)`` of an ``x_size`` map (the official
    ``BasicLayer``: its ``blocks``)."""

    def __init__(self, blocks: Iterable[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x


class ResidualTokenGroup(nn.Module):
    """``x + embed(conv(unembed(residual_group(x))))`` on tokens ``(B, H*W, C)`` (the
    official RSTB / RHTB: ``residual_group`` and ``conv``)."""

    def __init__(self, residual_group: nn.Module, conv: nn.Module) -> None:
        super().__init__()
        self.residual_group = residual_group
        self.conv = conv

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        y = to_map(self.residual_group(x, x_size), x_size)  # B, C, H, W
        return to_tokens(self.conv(y)) + x


def token_features(x: Tensor, patch_embed: nn.Module, layers: Iterable[nn.Module],
                   norm: nn.Module) -> Tensor:
    """Deep features ``(B, C, H, W) -> (B, C, H, W)``: embed, every residual group,
    ``norm``, back to a map."""
    x_size = (x.shape[2], x.shape[3])
    t = patch_embed(x)  # B, H*W, C
    for layer in layers:
        t = layer(t, x_size)
    return to_map(norm(t), x_size)


def init_transformer_weights(m: nn.Module) -> None:
    """The official initialisation (``model.apply``): truncated-normal Linear weights,
    zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def count_group_blocks(sd: Mapping[str, Tensor], pattern: re.Pattern[str]) -> list[int]:
    """Blocks per residual group of a checkpoint, from keys matching ``pattern`` (two
    groups: group index, block index); [] if the numbering has gaps."""
    seen: dict[int, int] = {}
    for key in sd:
        m = pattern.match(key)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            seen[i] = max(seen.get(i, 0), j + 1)
    return [seen[i] for i in range(len(seen))] if set(seen) == set(range(len(seen))) else []
