"""``swinir``: SwinIR (Liang et al., ICCVW 2021), image restoration with Swin Transformer
blocks; official ``JingyunLiang/SwinIR`` checkpoints load (``models/network_swinir.py``
key names).

Layout: ``conv_first`` -> ``patch_embed.norm`` -> residual Swin transformer blocks
``layers.<i>`` (``residual_group.blocks.<j>`` + ``conv``) -> ``norm`` ->
``conv_after_body`` (+ shallow skip) -> reconstruction:

* ``pixelshuffle`` (classical SR): ``conv_before_upsample.0``, ``upsample.{0,2,..}``,
  ``conv_last``;
* ``pixelshuffledirect`` (lightweight SR): one conv + shuffle, ``upsample.0``;
* ``nearest+conv`` (real-world SR): ``conv_before_upsample.0``, ``conv_up1``,
  (``conv_up2`` for x4), ``conv_hr``, ``conv_last``.

Unlike the official module, nothing depends on a training size: the relative-position
index and the shifted-window masks are rebuilt (cached) for each input size and are
not saved. Official state dicts carry them as ``relative_position_index`` /
``attn_mask`` buffers; :func:`convert_official` drops those keys before loading.
Inputs must be a multiple of ``window_size`` (the descriptor pads).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.tokens import (
    PatchEmbed,
    ResidualTokenGroup,
    TokenBlocks,
    count_group_blocks,
    init_transformer_weights,
    token_features,
)
from attnsr.layers.upsample import Upsample, UpsampleOneStep, detect_upsample_scale
from attnsr.layers.window import SwinTransformerBlock
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.edsr import DIV2K_MEAN
from attnsr.models.registry import register_arch, register_preset

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv")

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {
    "embed_dim": 12, "depths": (2,), "num_heads": (2,), "window_size": 4, "num_feat": 8,
}


@dataclass(frozen=True, kw_only=True)
class SwinIRConfig:
    """SwinIR hyper-parameters (official names).

    ``img_size`` is the LR training patch of the official recipe (48 on DIV2K, 64 on
    DF2K); it is informational only: any multiple of ``window_size`` runs.
    ``use_sdpa`` picks fused attention; False runs the reference math (same numbers).
    """

    scale: int = 4
    in_channels: int = 3
    img_size: int = 64
    window_size: int = 8
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    patch_norm: bool = True
    upsampler: str = "pixelshuffle"
    resi_connection: str = "1conv"
    num_feat: int = 64
    img_range: float = 1.0
    use_sdpa: bool = True

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError("depths and num_heads need the same (non-zero) length")
        if any(self.embed_dim % h for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler {self.upsampler!r} not in {UPSAMPLERS}")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ValueError("resi_connection must be '1conv' or '3conv'")
        if self.upsampler == "nearest+conv" and self.scale not in (2, 4):
            raise ValueError("the nearest+conv upsampler supports x2 and x4 only")
        if self.window_size < 2:
            raise ValueError("window_size must be >= 2")


def _resi_conv(dim: int, kind: str) -> nn.Module:
    """The conv closing a residual group: one 3x3 conv, or the cheaper 3-conv
    bottleneck (``3conv``: dim -> dim/4 -> dim/4 -> dim)."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, padding=1)
    q = dim // 4
    return nn.Sequential(
        nn.Conv2d(dim, q, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(q, q, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(q, dim, 3, padding=1),
    )


class BasicLayer(TokenBlocks):
    """``depth`` Swin blocks alternating regular and shifted (``ws // 2``) windows."""

    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int) -> None:
        ws = cfg.window_size
        super().__init__(
            SwinTransformerBlock(
                dim=cfg.embed_dim, num_heads=heads, window_size=ws,
                shift_size=0 if j % 2 == 0 else ws // 2,
                mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, use_sdpa=cfg.use_sdpa,
            )
            for j in range(depth)
        )


class RSTB(ResidualTokenGroup):
    """Residual Swin transformer block: ``x + embed(conv(unembed(blocks(x))))`` on
    tokens ``(B, H*W, C)``."""

    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int) -> None:
        super().__init__(BasicLayer(cfg, depth, heads), _resi_conv(cfg.embed_dim,
                                                                   cfg.resi_connection))


# ---------------------------------------------------------------- official checkpoints

_BLOCK = re.compile(r"layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def _count_blocks(sd: Mapping[str, Tensor]) -> list[int]:
    """Blocks per residual group (see :func:`attnsr.layers.tokens.count_group_blocks`)."""
    return count_group_blocks(sd, _BLOCK)


def _detect_upsampler(sd: Mapping[str, Tensor], embed: int, out_ch: int) -> dict[str, Any] | None:
    """Upsampler kind, scale and ``num_feat`` from the reconstruction keys."""
    if "conv_up1.weight" in sd:
        nf = int(sd["conv_before_upsample.0.weight"].shape[0])
        scale = 4 if "conv_up2.weight" in sd else 2
        return {"upsampler": "nearest+conv", "scale": scale, "num_feat": nf}
    if "conv_before_upsample.0.weight" in sd:
        nf = int(sd["conv_before_upsample.0.weight"].shape[0])
        scale = detect_upsample_scale(sd, "upsample.", nf)
        return None if scale is None else {"upsampler": "pixelshuffle", "scale": scale,
                                           "num_feat": nf}
    if "upsample.0.weight" in sd and "upsample.2.weight" not in sd:
        r2 = int(sd["upsample.0.weight"].shape[0]) // out_ch
        s = math.isqrt(r2)
        return {"upsampler": "pixelshuffledirect", "scale": s} if s * s == r2 else None
    return None  # denoising / JPEG models (no upsampler) are not SR models


def detect_swinir(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """SwinIR config from an official state dict, or None if the keys are not SwinIR's.

    Reads embed_dim and channels (``conv_first``), depths (blocks per layer), heads
    and window size (bias tables: ``(2ws-1)^2 x heads``), mlp_ratio (``fc1``),
    residual conv kind, upsampler kind, scale and ``num_feat``.
    """
    needed = ("conv_first.weight", "norm.weight",
              "layers.0.residual_group.blocks.0.attn.relative_position_bias_table")
    if any(k not in sd for k in needed) or "absolute_pos_embed" in sd:
        return None
    depths = _count_blocks(sd)
    if not depths:
        return None
    embed, in_ch = (int(n) for n in sd["conv_first.weight"].shape[:2])
    tables = [sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"]
              for i in range(len(depths))]
    side = math.isqrt(int(tables[0].shape[0]))
    up = _detect_upsampler(sd, embed, in_ch)
    if up is None or side * side != tables[0].shape[0] or side % 2 == 0:
        return None
    hidden = int(sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0])
    return {
        **up, "in_channels": in_ch, "embed_dim": embed, "depths": tuple(depths),
        "num_heads": tuple(int(t.shape[1]) for t in tables), "window_size": (side + 1) // 2,
        "mlp_ratio": hidden / embed, "patch_norm": "patch_embed.norm.weight" in sd,
        "qkv_bias": "layers.0.residual_group.blocks.0.attn.qkv.bias" in sd,
        "resi_connection": "1conv" if "conv_after_body.weight" in sd else "3conv",
    }


def convert_official(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official state dict -> ours: drop the size-bound buffers we rebuild per input."""
    return {k: v for k, v in sd.items()
            if not k.endswith((".relative_position_index", ".attn_mask"))}


# ------------------------------------------------------------------------------ model


@register_arch("swinir", SwinIRConfig, tiny=TINY, detect=detect_swinir,
               convert=convert_official)
class SwinIR(SRModel):
    """lr ``(B, C, H, W)`` in [0, 1], H and W multiples of ``window_size`` ->
    sr ``(B, C, sH, sW)``, about [0, 1]."""

    def __init__(self, config: SwinIRConfig) -> None:
        super().__init__()
        self.config = c = config
        dim, ch = c.embed_dim, c.in_channels
        mean = DIV2K_MEAN if ch == 3 else (0.0,) * ch
        self.register_buffer("mean", torch.tensor(mean).view(1, ch, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(ch, dim, 3, padding=1)
        self.patch_embed = PatchEmbed(dim, c.patch_norm)
        groups = zip(c.depths, c.num_heads, strict=True)
        self.layers = nn.ModuleList(RSTB(c, d, h) for d, h in groups)
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = _resi_conv(dim, c.resi_connection)
        self._build_reconstruction()
        self.apply(init_transformer_weights)

    def _build_reconstruction(self) -> None:
        c, nf = self.config, self.config.num_feat
        if c.upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(
                scale=c.scale, in_channels=c.embed_dim, out_channels=c.in_channels
            )
            return
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c.embed_dim, nf, 3, padding=1), nn.LeakyReLU(inplace=True)
        )
        if c.upsampler == "pixelshuffle":
            self.upsample = Upsample(scale=c.scale, channels=nf)
        else:  # nearest+conv
            self.conv_up1 = nn.Conv2d(nf, nf, 3, padding=1)
            if c.scale == 4:
                self.conv_up2 = nn.Conv2d(nf, nf, 3, padding=1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.conv_last = nn.Conv2d(nf, c.in_channels, 3, padding=1)

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features: ``(B, C, H, W) -> (B, C, H, W)`` through all groups."""
        return token_features(x, self.patch_embed, self.layers, self.norm)

    def forward(self, lr: Tensor) -> Tensor:
        ws = self.config.window_size
        if lr.shape[-2] % ws or lr.shape[-1] % ws:
            raise ValueError(f"input {tuple(lr.shape[-2:])} is not a multiple of window {ws}")
        x = (lr - self.mean) * self.config.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        return self._reconstruct(x) / self.config.img_range + self.mean

    def _reconstruct(self, x: Tensor) -> Tensor:
        """Features ``(B, embed, H, W)`` -> image ``(B, C, sH, sW)`` (mean-shifted)."""
        up = self.config.upsampler
        if up == "pixelshuffledirect":
            return self.upsample(x)
        x = self.conv_before_upsample(x)
        if up == "pixelshuffle":
            return self.conv_last(self.upsample(x))
        x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
        if self.config.scale == 4:
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(x)))

    def traits(self) -> ModelTraits:
        ws = self.config.window_size
        # The bound grows with depth (each block reaches ws - 1 pixels further), but the
        # pixels that matter (LAM attribution maps) sit within a few windows; the
        # official tiled test uses 32-pixel overlaps with 8-pixel windows.
        return ModelTraits(
            multiple_of=ws, min_size=ws, fp16_safe=False, bf16_safe=True,
            has_global_ops=False, receptive_field=4 * ws,
        )


register_preset(
    "swinir", "swinir",
    description="SwinIR classical SR (6 RSTB x 6 blocks, 180 dims, window 8); "
    "official weights load",
    scales=(2, 3, 4, 8),
    img_size=64, window_size=8, embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6,
    mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv", img_range=1.0,
)
register_preset(
    "swinir_light", "swinir",
    description="SwinIR lightweight SR (4 RSTB x 6 blocks, 60 dims, one-step upsampler); "
    "official weights load",
    scales=(2, 3, 4),
    img_size=64, window_size=8, embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4,
    mlp_ratio=2.0, upsampler="pixelshuffledirect", resi_connection="1conv", img_range=1.0,
)
