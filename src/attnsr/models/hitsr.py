"""``hitsr``: HiT-SR (Zhang, Zhang & Yu, ECCV 2024), hierarchical transformers for
efficient SR; official ``XiangZ-0/HiT-SR`` state dicts (HiT-SRF, HiT-SIR) load as they
are (``basicsr/archs/hit_srf_arch.py`` / ``hit_sir_arch.py`` key names).

Layout (SwinIR-light's, with SCC blocks): ``conv_first`` -> ``patch_embed.norm`` ->
residual hierarchical transformer blocks ``layers.<i>`` (``residual_group.blocks.<j>``
+ ``conv``) -> ``norm`` -> ``conv_after_body`` (+ shallow skip) -> ``upsample.0``
(one conv + pixel shuffle). Block ``j`` of every group uses window
``base_win_size * hier_win_ratios[j]`` (official: 4, 8, 16, 32, 48, 64 pixels) and is
*post-norm*: ``x + norm1(SCC(x))``, then ``x + norm2(FFN(x))``. HiT-SRF's FFN has a
5x5 depth-wise conv on its hidden map (``mlp.dwconv``, ``conv_ffn=True``); HiT-SIR's
is a plain MLP.

Each block pads its own input to its window (periodic reflection, see
:mod:`attnsr.layers.hierarchical`), so the network runs at any input size without
image-level padding, as the official one does (``multiple_of == 1``). The windows are
anchored at the top-left corner and reach 64 pixels: an output pixel depends on a wide,
position-dependent neighbourhood, so tiling is approximate (``has_global_ops``).

HiT-SNG (the NGram variant) is not implemented.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.layers.hierarchical import SpatialChannelCorrelation
from attnsr.layers.tokens import (
    PatchEmbed,
    ResidualTokenGroup,
    TokenBlocks,
    count_group_blocks,
    init_transformer_weights,
    token_features,
)
from attnsr.layers.upsample import UpsampleOneStep
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.edsr import DIV2K_MEAN
from attnsr.models.registry import register_arch, register_preset

OFFICIAL_RATIOS = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0)

# Overrides that make a tiny model for fast tests: windows 2 (below the base: one
# pixel per key cell) and 8 (2x2-pixel cells).
TINY: dict[str, Any] = {
    "embed_dim": 32, "depths": (2,), "num_heads": (2,), "base_win_size": 4,
    "hier_win_ratios": (0.5, 2.0),
}


@dataclass(frozen=True, kw_only=True)
class HiTSRConfig:
    """HiT-SR hyper-parameters (official names; ``base_win_size`` is one int, the
    official ``[8, 8]``).

    ``img_size`` is the LR training patch (informational only). ``conv_ffn`` picks
    HiT-SRF's FFN (with a depth-wise conv) over HiT-SIR's MLP.
    """

    scale: int = 4
    in_channels: int = 3
    img_size: int = 64
    embed_dim: int = 60
    depths: tuple[int, ...] = (6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    base_win_size: int = 8
    hier_win_ratios: tuple[float, ...] = OFFICIAL_RATIOS
    mlp_ratio: float = 2.0
    conv_ffn: bool = True
    patch_norm: bool = True
    img_range: float = 1.0

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError("depths and num_heads need the same (non-zero) length")
        if max(self.depths) > len(self.hier_win_ratios):
            raise ValueError(f"a group of {max(self.depths)} blocks needs as many "
                             f"hier_win_ratios (got {len(self.hier_win_ratios)})")
        if any(self.embed_dim % (2 * h) for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of 2 * num_heads")
        if self.embed_dim < 16:
            raise ValueError("embed_dim must be >= 16 (the position MLP has embed_dim // 16)")
        for ws in self.window_sizes:
            if ws < 1 or (ws > self.base_win_size and ws % self.base_win_size):
                raise ValueError(f"window {ws} is neither <= nor a multiple of base "
                                 f"{self.base_win_size}")

    @property
    def window_sizes(self) -> tuple[int, ...]:
        """The window of block ``j`` of each group (official ``int(base * ratio)``)."""
        return tuple(int(self.base_win_size * r) for r in self.hier_win_ratios)


class DWConv(nn.Module):
    """5x5 depth-wise conv + GELU on a hidden map (official key: ``depthwise_conv.0``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.depthwise_conv(x)


class ConvFFN(nn.Module):
    """HiT-SRF's FFN on tokens ``(B, H*W, C)``: ``fc1 -> GELU -> h + dwconv(h) -> fc2``,
    ``dwconv`` a 5x5 depth-wise conv + GELU on the hidden map (``conv_ffn=False``: no
    dwconv, HiT-SIR's MLP)."""

    def __init__(self, dim: int, hidden: int, *, conv: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = DWConv(hidden) if conv else None
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        h = self.act(self.fc1(x))  # B, L, hidden
        if self.dwconv is not None:
            B, _, C = h.shape
            m = h.transpose(1, 2).reshape(B, C, *x_size)  # B, hidden, H, W
            h = h + self.dwconv(m).flatten(2).transpose(1, 2)
        return self.fc2(h)


class HierarchicalTransformerBlock(nn.Module):
    """Post-norm block on tokens ``(B, H*W, C)``: ``x + norm1(SCC(x))`` in windows of
    ``window_size``, then ``x + norm2(FFN(x))``."""

    def __init__(self, cfg: HiTSRConfig, heads: int, window_size: int) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.correlation = SpatialChannelCorrelation(
            dim, base_window=cfg.base_win_size, window_size=window_size, num_heads=heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * cfg.mlp_ratio), conv=cfg.conv_ffn)

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        B, L, C = x.shape
        h = self.correlation(x.view(B, *x_size, C)).reshape(B, L, C)  # B, H*W, C
        x = x + self.norm1(h)
        return x + self.norm2(self.mlp(x, x_size))


class BasicLayer(TokenBlocks):
    """``depth`` blocks whose windows grow along ``cfg.window_sizes``."""

    def __init__(self, cfg: HiTSRConfig, depth: int, heads: int) -> None:
        super().__init__(
            HierarchicalTransformerBlock(cfg, heads, ws) for ws in cfg.window_sizes[:depth])


class RHTB(ResidualTokenGroup):
    """Residual hierarchical transformer block: ``x + embed(conv(unembed(blocks(x))))``
    on tokens ``(B, H*W, C)``."""

    def __init__(self, cfg: HiTSRConfig, depth: int, heads: int) -> None:
        super().__init__(BasicLayer(cfg, depth, heads),
                         nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 3, padding=1))


# ---------------------------------------------------------------- official checkpoints

_BLOCK = re.compile(
    r"layers\.(\d+)\.residual_group\.blocks\.(\d+)\.correlation\.spatial_linear\.weight$")


def _count_blocks(sd: Mapping[str, Tensor]) -> list[int]:
    """Blocks per residual group (see :func:`attnsr.layers.tokens.count_group_blocks`)."""
    return count_group_blocks(sd, _BLOCK)


def _ratios(sd: Mapping[str, Tensor], depths: list[int], base: int) -> tuple[float, ...] | None:
    """Window ratios from the ``spatial_linear`` widths (``(ws / base)^2``, 1 at or below
    the base). The official ``(0.5, 1, 2, 4, 6, 8)`` is assumed when the widths fit it
    (a ratio below 1 and the base itself are not stored in the weights)."""
    cells = []
    for j in range(max(depths)):
        i = next(i for i, d in enumerate(depths) if d > j)
        n = int(sd[f"layers.{i}.residual_group.blocks.{j}.correlation.spatial_linear.weight"]
                .shape[1])
        side = math.isqrt(n)
        if side * side != n:
            return None
        cells.append(side)
    official = [max(1, int(r)) for r in OFFICIAL_RATIOS]
    if cells == official[: len(cells)]:
        return OFFICIAL_RATIOS[: len(cells)]
    return tuple(float(c) for c in cells)


def detect_hitsr(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """HiT-SRF / HiT-SIR config from an official state dict, or None.

    Reads channels and embed_dim (``conv_first``), depths, heads (the position MLP's
    output), window ratios (``spatial_linear``; base window 8 as in every official
    config), mlp_ratio (``fc1``), the FFN kind (``mlp.dwconv``) and the scale
    (``upsample.0``: ``scale^2 * channels`` outputs).
    """
    prefix = "layers.0.residual_group.blocks.0."
    needed = ("conv_first.weight", "norm.weight", "conv_after_body.weight",
              "upsample.0.weight", prefix + "correlation.qv.linear.weight",
              prefix + "correlation.pos.pos3.2.weight")
    if any(k not in sd for k in needed) or "upsample.2.weight" in sd:
        return None
    depths = _count_blocks(sd)
    if not depths:
        return None
    embed, in_ch = (int(n) for n in sd["conv_first.weight"].shape[:2])
    r2, rem = divmod(int(sd["upsample.0.weight"].shape[0]), in_ch)
    scale = math.isqrt(r2)
    ratios = _ratios(sd, depths, 8)
    if rem or scale * scale != r2 or ratios is None:
        return None
    heads = tuple(int(sd[f"layers.{i}.residual_group.blocks.0.correlation.pos.pos3.2.weight"]
                      .shape[0]) for i in range(len(depths)))
    hidden = int(sd[prefix + "mlp.fc1.weight"].shape[0])
    return {
        "scale": scale, "in_channels": in_ch, "embed_dim": embed, "depths": tuple(depths),
        "num_heads": heads, "base_win_size": 8, "hier_win_ratios": ratios,
        "mlp_ratio": hidden / embed,
        "conv_ffn": prefix + "mlp.dwconv.depthwise_conv.0.weight" in sd,
        "patch_norm": "patch_embed.norm.weight" in sd,
    }


# ------------------------------------------------------------------------------ model


@register_arch("hitsr", HiTSRConfig, tiny=TINY, detect=detect_hitsr)
class HiTSR(SRModel):
    """lr ``(B, C, H, W)`` in [0, 1], any size -> sr ``(B, C, sH, sW)``, about [0, 1]."""

    def __init__(self, config: HiTSRConfig) -> None:
        super().__init__()
        self.config = c = config
        dim, ch = c.embed_dim, c.in_channels
        mean = DIV2K_MEAN if ch == 3 else (0.0,) * ch
        self.register_buffer("mean", torch.tensor(mean).view(1, ch, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(ch, dim, 3, padding=1)
        self.patch_embed = PatchEmbed(dim, c.patch_norm)
        groups = zip(c.depths, c.num_heads, strict=True)
        self.layers = nn.ModuleList(RHTB(c, d, h) for d, h in groups)
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.upsample = UpsampleOneStep(scale=c.scale, in_channels=dim, out_channels=ch)
        self.apply(init_transformer_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features: ``(B, C, H, W) -> (B, C, H, W)`` through all groups."""
        return token_features(x, self.patch_embed, self.layers, self.norm)

    def forward(self, lr: Tensor) -> Tensor:
        x = (lr - self.mean) * self.config.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        return self.upsample(x) / self.config.img_range + self.mean

    def traits(self) -> ModelTraits:
        # Windows of up to 8x the base, anchored at the image corner, 24 blocks deep:
        # exact tiling would need overlaps of whole images; the overlap covers the
        # largest window and tiles are blended (approximate, like global models).
        return ModelTraits(
            multiple_of=1, min_size=1, fp16_safe=False, bf16_safe=True,
            has_global_ops=True, receptive_field=max(self.config.window_sizes),
        )


register_preset(
    "hitsr_srf", "hitsr",
    description="HiT-SRF (ECCV 2024): SRFormer-light made hierarchical, 4x6 SCC blocks, "
    "60 dims, windows 4..64, conv FFN; official weights load",
    scales=(2, 3, 4),
    embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, base_win_size=8,
    hier_win_ratios=OFFICIAL_RATIOS, mlp_ratio=2.0, conv_ffn=True,
)
register_preset(
    "hitsr_sir", "hitsr",
    description="HiT-SIR (ECCV 2024): SwinIR-light made hierarchical, 4x6 SCC blocks, "
    "60 dims, windows 4..64, MLP FFN; official weights load",
    scales=(2, 3, 4),
    embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, base_win_size=8,
    hier_win_ratios=OFFICIAL_RATIOS, mlp_ratio=2.0, conv_ffn=False,
)
