"""``nlsn``: NLSN, image super-resolution with non-local sparse attention (Mei et al.,
CVPR 2021): an EDSR backbone with a :class:`NonLocalSparseAttention` block at the start
of the body and after every ``attn_every`` residual blocks.

Keys follow the official ``HarukiYqM/Non-Local-Sparse-Attention`` code (EDSR code base):
``sub_mean``, ``head.0``, ``body.<i>`` (``conv_match.0`` / ``conv_assembly.0`` for
attention, ``body.{0,2}`` for residual blocks, a final conv), ``tail.0.*`` (upsampler),
``tail.1``, ``add_mean``; so its released weights load (``detect_nlsn``). The official
model works on [0, 1] images (``--rgb_range 1``).

Presets: ``nlsn`` is smaller than the paper's model (32 blocks x 256 features,
res_scale 0.1, 5 attention blocks: 41.8M parameters at x2): 16 blocks x 128 features,
3 attention blocks, 5.6M (x2) / 6.2M (x4) parameters, trainable on one GPU;
``nlsn_light`` is 16 x 64 (1.4M / 1.6M). Official paper-size weights still load:
detection reads the sizes from the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from attnsr.layers.nonlocal_attention import NonLocalSparseAttention
from attnsr.layers.upsample import Upsample, detect_upsample_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.edsr import DIV2K_MEAN, MeanShift, ResBlock
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests (applied on top of any preset).
TINY: dict[str, Any] = {"n_resblocks": 2, "n_feats": 8, "attn_every": 1, "chunk_size": 16,
                        "n_hashes": 2}


@dataclass(frozen=True, kw_only=True)
class NLSNConfig:
    """NLSN hyper-parameters (official names; ``attn_every`` is fixed to 8 there).

    ``n_hashes`` and ``chunk_size`` only steer the attention, they hold no weights;
    ``reduction`` sets the matching embedding width ``n_feats // reduction``.
    """

    scale: int = 4
    in_channels: int = 3
    n_resblocks: int = 16
    n_feats: int = 128
    res_scale: float = 1.0
    attn_every: int = 8
    n_hashes: int = 4
    chunk_size: int = 144
    reduction: int = 4
    rgb_range: float = 1.0
    rgb_mean: tuple[float, float, float] = DIV2K_MEAN

    def __post_init__(self) -> None:
        if self.in_channels != 3:
            raise ValueError("NLSN's mean shift needs in_channels=3")
        if min(self.n_resblocks, self.n_feats, self.attn_every, self.n_hashes) < 1:
            raise ValueError("n_resblocks, n_feats, attn_every and n_hashes must be >= 1")
        if self.n_feats // self.reduction < 1 or self.chunk_size < 1:
            raise ValueError("n_feats // reduction and chunk_size must be >= 1")


def body_layout(n_resblocks: int, attn_every: int) -> list[str]:
    """The kinds of ``body.<i>``: ``"attn"`` first and after every ``attn_every``
    residual blocks, ``"res"`` for residual blocks, ``"conv"`` last."""
    kinds = ["attn"]
    for i in range(n_resblocks):
        kinds.append("res")
        if (i + 1) % attn_every == 0:
            kinds.append("attn")
    return [*kinds, "conv"]


def _body_kinds(sd: Mapping[str, Tensor]) -> list[str]:
    """``body.<i>`` kinds found in a state dict (stops at the first gap)."""
    kinds, i = [], 0
    while True:
        if f"body.{i}.conv_match.0.weight" in sd:
            kinds.append("attn")
        elif f"body.{i}.body.0.weight" in sd:
            kinds.append("res")
        elif f"body.{i}.weight" in sd:
            return [*kinds, "conv"]
        else:
            return kinds
        i += 1


def detect_nlsn(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """NLSN config from official keys, or None. ``res_scale`` is not stored: 0.1 for
    256 features (the paper's model), else 1; hashing settings are the official ones."""
    needed = ("sub_mean.weight", "head.0.weight", "body.0.conv_match.0.weight", "tail.1.weight")
    if any(k not in sd for k in needed):
        return None
    kinds = _body_kinds(sd)
    n = kinds.count("res")
    if n == 0 or kinds[-1:] != ["conv"]:
        return None
    # one attention block only: any period longer than the body fits; prefer the official 8
    every = kinds.index("attn", 1) - 1 if kinds.count("attn") > 1 else max(8, n + 1)
    if body_layout(n, every) != kinds:
        return None
    feats = int(sd["head.0.weight"].shape[0])
    scale = detect_upsample_scale(sd, "tail.0.", feats)
    match = int(sd["body.0.conv_match.0.weight"].shape[0])
    if scale is None or feats % match:
        return None
    return {"scale": scale, "n_resblocks": n, "n_feats": feats, "attn_every": every,
            "reduction": feats // match, "res_scale": 0.1 if feats == 256 else 1.0}


@register_arch("nlsn", NLSNConfig, tiny=TINY, detect=detect_nlsn)
class NLSN(SRModel):
    """lr ``(B, 3, H, W)`` in [0, 1] -> sr ``(B, 3, sH, sW)``, about [0, 1]."""

    def __init__(self, config: NLSNConfig) -> None:
        super().__init__()
        self.config = c = config
        f, rng, mean = c.n_feats, c.rgb_range, c.rgb_mean
        self.sub_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=-1, trainable=False)
        self.head = nn.Sequential(nn.Conv2d(3, f, 3, padding=1))
        body: list[nn.Module] = []
        for i, kind in enumerate(body_layout(c.n_resblocks, c.attn_every)):
            if kind == "attn":
                body.append(NonLocalSparseAttention(
                    channels=f, reduction=c.reduction, n_hashes=c.n_hashes, chunk_size=c.chunk_size,
                    res_scale=c.res_scale, seed=i,
                ))
            elif kind == "res":
                body.append(ResBlock(channels=f, res_scale=c.res_scale))
            else:
                body.append(nn.Conv2d(f, f, 3, padding=1))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsample(scale=c.scale, channels=f),
                                  nn.Conv2d(f, 3, 3, padding=1))
        self.add_mean = MeanShift(rgb_range=rng, rgb_mean=mean, sign=1, trainable=False)

    def forward(self, lr: Tensor) -> Tensor:
        x = self.head(self.sub_mean(lr * self.config.rgb_range))
        x = self.body(x) + x
        return self.add_mean(self.tail(x)) / self.config.rgb_range

    def traits(self) -> ModelTraits:
        # Non-local attention sees the whole image; the local part is the conv stack
        # (head, 2 per residual block, one 3x3 match conv per attention, body end, up).
        n_attn = body_layout(self.config.n_resblocks, self.config.attn_every).count("attn")
        return ModelTraits(has_global_ops=True, fp16_safe=False,
                           receptive_field=2 * self.config.n_resblocks + n_attn + 4,
                           export_static_reason=(
                               "its non-local sparse attention takes the number of hash "
                               "buckets and chunks (and its random rotations) from the "
                               "pixel count"))


register_preset(
    "nlsn", "nlsn",
    description="NLSN: EDSR body (16 blocks x 128) with non-local sparse attention every "
    "8 blocks (paper: 32 x 256); official weights load",
    scales=(2, 3, 4),
    n_resblocks=16, n_feats=128, res_scale=1.0, attn_every=8, n_hashes=4, chunk_size=144,
)
register_preset(
    "nlsn_light", "nlsn",
    description="NLSN light: 16 blocks x 64 features, non-local sparse attention every 8",
    scales=(2, 3, 4),
    n_resblocks=16, n_feats=64, res_scale=1.0, attn_every=8, n_hashes=4, chunk_size=144,
)
