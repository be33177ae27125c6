"""``span``: SPAN, the swift parameter-free attention network (Wan et al. 2024, NTIRE 2024
efficient SR winner).

A 3x3 head, six :class:`~attnsr.layers.parameter_free.SPAB` blocks whose attention is a
symmetric activation of their own last conv (no attention parameters), a 3x3 conv on the
last block, a 1x1 fusion of ``[head, conv_2(block_6), block_1, silu(block_6's first conv)]`` and
a one-step pixel-shuffle upsampler. Every 3x3 conv is a re-parameterisable
:class:`~attnsr.layers.reparam.Conv3XC`: ``fused=False`` is the training form (the
authors' ``hongyuanyu/SPAN`` training checkpoints), ``fused=True`` the single-conv
inference form (the NTIRE 2024 challenge checkpoints; :meth:`SPAN.fuse` converts).

Input scaling as in the official code: ``(x - DIV2K mean) * 255``; the output is *not*
rescaled (the network learns [0, 1] outputs directly).

Keys: ``conv_1``, ``block_<i>.{c1_r,c2_r,c3_r}``, ``conv_cat``, ``conv_2``, ``upsampler.0``,
each Conv3XC with ``eval_conv`` (fused) or ``sk`` + ``conv.{0,1,2}`` (training form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.layers.parameter_free import SPAB
from attnsr.layers.reparam import Conv3XC
from attnsr.layers.upsample import UpsampleOneStep, detect_one_step_scale
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.edsr import DIV2K_MEAN
from attnsr.models.registry import register_arch, register_preset

# Overrides that make a tiny model for fast tests: the training form, so the registry
# tests exercise the branches (train mode) and the on-the-fly fusion (eval mode).
TINY: dict[str, Any] = {"feature_channels": 8, "n_blocks": 2, "fused": False}


@dataclass(frozen=True, kw_only=True)
class SPANConfig:
    """SPAN hyper-parameters.

    Attributes:
        feature_channels: C of every block (official: 48; NTIRE 2024 models 28 / 26).
        n_blocks: SPABs (official: 6).
        gain: Conv3XC expansion of the training form.
        fused: re-parameterised inference form (one 3x3 conv per Conv3XC).
        img_range: the input is ``(x - rgb_mean) * img_range``.
    """

    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    feature_channels: int = 48
    n_blocks: int = 6
    gain: int = 2
    fused: bool = True
    img_range: float = 255.0
    rgb_mean: tuple[float, float, float] = DIV2K_MEAN

    def __post_init__(self) -> None:
        if min(self.feature_channels, self.n_blocks, self.gain, self.scale) < 1:
            raise ValueError("feature_channels, n_blocks, gain and scale must be >= 1")
        if self.in_channels != 3:
            raise ValueError("SPAN's mean shift needs in_channels=3")


# ------------------------------------------------------------------ official checkpoints


def _conv3xc_form(sd: Mapping[str, Tensor], prefix: str) -> str | None:
    """``"fused"`` / ``"branches"`` for a Conv3XC stored under ``prefix``, else None."""
    if f"{prefix}.sk.weight" in sd and f"{prefix}.conv.1.weight" in sd:
        return "branches"
    if f"{prefix}.eval_conv.weight" in sd:
        return "fused"
    return None


def _detect_span(sd: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """SPAN config from the official keys (hongyuanyu/SPAN training checkpoints, or the
    fused NTIRE 2024 ``model_zoo`` ones), or None."""
    if "conv_cat.weight" not in sd or "upsampler.0.weight" not in sd:
        return None
    form = _conv3xc_form(sd, "conv_1")
    if form is None or any(_conv3xc_form(sd, p) != form
                           for p in ("block_1.c1_r", "block_1.c3_r", "conv_2")):
        return None
    n = 0
    while _conv3xc_form(sd, f"block_{n + 1}.c1_r") == form:
        n += 1
    head = sd["conv_1.sk.weight" if form == "branches" else "conv_1.eval_conv.weight"]
    feats, in_ch = int(head.shape[0]), int(head.shape[1])
    if tuple(sd["conv_cat.weight"].shape) != (feats, 4 * feats, 1, 1):
        return None
    scale = detect_one_step_scale(sd, "upsampler.0.weight", in_ch)
    if scale is None:
        return None
    config: dict[str, Any] = {"scale": scale, "in_channels": in_ch, "feature_channels": feats,
                              "n_blocks": n, "fused": form == "fused"}
    if form == "branches":
        config["gain"] = int(sd["conv_1.conv.0.weight"].shape[0]) // in_ch
    return config


def _convert_span(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``eval_conv`` copies stored next to training branches: the authors
    recompute them from the branches on every evaluation forward (``update_params``),
    so the stored values are ignored there too (and may be stale)."""
    return {k: v for k, v in sd.items()
            if not (".eval_conv." in k and f"{k.split('.eval_conv.')[0]}.sk.weight" in sd)}


# ------------------------------------------------------------------------------ model


@register_arch("span", SPANConfig, tiny=TINY, detect=_detect_span, convert=_convert_span)
class SPAN(SRModel):
    """lr (B, 3, H, W) in [0, 1] -> sr (B, C_out, sH, sW), about [0, 1]."""

    def __init__(self, config: SPANConfig) -> None:
        super().__init__()
        self.config = config
        c, kw = config.feature_channels, {"gain": config.gain, "fused": config.fused}
        self.conv_1 = Conv3XC(in_channels=config.in_channels, out_channels=c, **kw)
        for i in range(1, config.n_blocks + 1):  # official names block_1..block_n
            self.add_module(f"block_{i}", SPAB(channels=c, **kw))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(in_channels=c, out_channels=c, **kw)
        self.upsampler = UpsampleOneStep(scale=config.scale, in_channels=c,
                                         out_channels=config.out_channels)
        mean = torch.tensor(config.rgb_mean).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)  # not in official checkpoints
        self._scale_head_init()

    @torch.no_grad()
    def _scale_head_init(self) -> None:
        """Divide the head's input weights by ``img_range``: a fresh network then sees O(1)
        features. (With PyTorch's default init and inputs times 255, a fresh SPAN outputs
        about +-30 and its float32 rounding exceeds 1e-5; loaded weights replace this.)"""
        head = self.conv_1
        convs = [head.eval_conv] if self.config.fused else [head.sk, head.conv[0]]
        for conv in convs:
            conv.weight.div_(self.config.img_range)

    def forward(self, lr: Tensor) -> Tensor:
        fea = self.conv_1((lr - self.mean) * self.config.img_range)  # B, C, H, W
        out, first, a1 = fea, fea, fea
        for i in range(1, self.config.n_blocks + 1):
            out, a1 = getattr(self, f"block_{i}")(out)  # a1: silu of the block's first conv
            if i == 1:
                first = out
        fused = self.conv_cat(torch.cat([fea, self.conv_2(out), first, a1], dim=1))  # B, C, H, W
        return self.upsampler(fused)

    def fuse(self) -> SPAN:
        """The re-parameterised copy (``fused=True``): same outputs in eval mode, one 3x3
        conv per Conv3XC (what the authors' ``eval_conv`` holds)."""
        if self.config.fused:
            return self
        ref = next(self.parameters())
        fused = SPAN(replace(self.config, fused=True)).to(ref.device, ref.dtype)
        branches = (".sk.", ".conv.")
        state = {k: v for k, v in self.state_dict().items() if not any(b in k for b in branches)}
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, Conv3XC):
                    weight, bias = module.fused_weights()
                    state[f"{name}.eval_conv.weight"] = weight.detach().clone()
                    state[f"{name}.eval_conv.bias"] = bias.detach().clone()
        fused.load_state_dict(state, strict=True)
        return fused.train(self.training)

    def export_module(self) -> nn.Module:
        """ONNX/TorchScript trace the fused form (one conv per Conv3XC)."""
        return self.fuse().eval()

    def traits(self) -> ModelTraits:
        # 3x3 convs: head, 3 per block, conv_2, upsampler (the 1x1 fusion adds none).
        return ModelTraits(receptive_field=3 * self.config.n_blocks + 3)


register_preset(
    "span", "span",
    description="SPAN (official code default): parameter-free attention, 48 feats x 6 SPABs",
    scales=(2, 3, 4),
    feature_channels=48, n_blocks=6,
)
register_preset(
    "span_ntire", "span",
    description="SPAN NTIRE-2024 ESR challenge model (28 feats x 6 SPABs, ~151K); "
                "official fused x4 checkpoint in NTIRE2024_ESR",
    scales=(2, 3, 4),
    feature_channels=28, n_blocks=6,
)
# DSCF, the NTIRE 2025 efficient-SR winner (team XiaomiMM; Chai et al., "Distillation-
# Supervised Convolutional Low-Rank Adaptation for Efficient Image Super-Resolution", CVPRW
# 2025): DSCLoRA is a training method (ConvLoRA adapters on SPAN's convs plus distillation
# from a pre-trained SPAN, merged into the convs afterwards), so the published network is a
# fused SPAN of 26 features and 6 blocks. Its checkpoint (Amazingren/NTIRE2025_ESR
# model_zoo/team23_DSCF.pth; the same file in Yaozzz666/DSCF-SR) holds exactly a fused
# SPAN's 44 keys, so the span detector reads it and it loads strictly, no conversion (a
# second architecture claiming the same keys could not be told apart from SPAN). The same
# size as NTIRE 2024 model_zoo/team39_spantiny_ch26_slim.pth.
register_preset(
    "dscf", "span",
    description="DSCF (NTIRE 2025 ESR winner, DSCLoRA-trained SPAN): 26 feats x 6 SPABs, "
                "fused (~131K); official x4 weights",
    scales=(2, 3, 4),
    feature_channels=26, n_blocks=6, fused=True,
)
