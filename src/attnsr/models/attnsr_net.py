"""``attnsr_net``: attnsr's own lightweight attention SR network (the bundled default).

Design, aimed at quality per CPU-second:
- a shallow conv head, ``n_blocks`` residual blocks of two 3x3 convs gated by
  :class:`~attnsr.layers.contextual.ContextualPixelAttention` (a dilated depthwise 3x3 context
  conv, 7x7 window, feeding a per-pixel, per-channel sigmoid gate), a 3x3 fusion conv with a long
  skip, and a one-step pixel-shuffle tail;
- a bilinear-upsampled copy of the input is added to the output, so the body learns
  only the residual detail (fast, stable training from scratch);
- every operation is local: no global pooling, no full attention, so tiled inference
  equals whole-image inference and cost is linear in the number of pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.layers.contextual import ContextualPixelAttention
from attnsr.layers.onednn import eager_cpu_nhwc, onednn_op
from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import register_arch, register_preset, register_pretrained


@dataclass(frozen=True, kw_only=True)
class AttnSRNetConfig:
    scale: int = 4
    in_channels: int = 3
    channels: int = 40
    n_blocks: int = 6
    context_kernel: int = 3
    context_dilation: int = 3
    attention: bool = True  # False: plain residual blocks (the ablation without the gate)

    def __post_init__(self) -> None:
        if self.scale < 1 or self.channels < 1 or self.n_blocks < 1:
            raise ValueError("scale, channels and n_blocks must be positive")
        if self.context_kernel % 2 == 0:
            raise ValueError("context_kernel must be odd")


class AttentionBlock(nn.Module):
    """``x + CPA(conv3x3(lrelu(conv3x3(x))))``: (B, C, H, W) -> (B, C, H, W).

    With ``attention=False`` the gate is left out: ``x + conv3x3(lrelu(conv3x3(x)))``.
    """

    def __init__(self, *, channels: int, context_kernel: int, context_dilation: int,
                 attention: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.05, inplace=True)
        self.attn: nn.Module = ContextualPixelAttention(
            channels=channels, kernel_size=context_kernel, dilation=context_dilation
        ) if attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.attn(self.conv2(self.act(self.conv1(x))))
        # inference: add into the fresh branch output instead of a new tensor
        return x + y if torch.is_grad_enabled() else y.add_(x)


TINY: dict[str, Any] = {"channels": 8, "n_blocks": 2}


_CONV_POINTWISE = onednn_op("_convolution_pointwise")


def _few_channel_conv(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int = 1
                      ) -> Tensor:
    """3x3 conv of the 3-channel input (``conv2d(x, weight, bias, padding)``). For an NHWC
    fp32 CPU input PyTorch sends it to its slow im2col path below 128x128 or so (the head
    and the bilinear skip: 293 against 128 us at 72x72, 1 thread); oneDNN's convolution op
    runs it directly, same values. Elsewhere (ONNX export, tracing, CUDA) the plain conv."""
    if _CONV_POINTWISE is None or not eager_cpu_nhwc(x):
        return F.conv2d(x, weight, bias, padding=padding)
    try:
        return _CONV_POINTWISE(x, weight, bias, [padding] * 2, [1, 1], [1, 1], 1, "none",
                               [], "")
    except RuntimeError:  # a build without it: the plain conv
        return F.conv2d(x, weight, bias, padding=padding)


def bilinear_kernel(scale: int, channels: int) -> Tensor:
    """Bilinear x``scale`` upsampling (``align_corners=False``) as a 3x3 conv in LR space
    followed by a pixel shuffle: ``(channels * scale^2, channels, 3, 3)`` float32.

    Output pixel ``scale * i + a`` samples the source at ``i + d_a``, ``d_a = (a + 0.5) /
    scale - 0.5`` in (-0.5, 0.5): taps ``i - 1, i`` or ``i, i + 1`` with linear weights, the
    same in both axes. On an edge-padded input (PyTorch clamps source indices at the
    border) ``pixel_shuffle(conv2d(pad(x, 1, "replicate"), K))`` equals
    ``F.interpolate(x, scale_factor=scale, mode="bilinear")`` to float rounding.
    """
    w = torch.zeros(scale, 3, dtype=torch.float64)
    for a in range(scale):
        d = (a + 0.5) / scale - 0.5
        if d >= 0:
            w[a, 1], w[a, 2] = 1.0 - d, d
        else:
            w[a, 0], w[a, 1] = -d, 1.0 + d
    taps = torch.einsum("ai,bj->abij", w, w).reshape(scale * scale, 3, 3)
    kernel = torch.zeros(channels * scale * scale, channels, 3, 3, dtype=torch.float64)
    for c in range(channels):  # pixel-shuffle order: channel c * s^2 + a * s + b
        kernel[c * scale * scale : (c + 1) * scale * scale, c] = taps
    return kernel.float()


@register_arch("attnsr_net", AttnSRNetConfig, tiny=TINY)
class AttnSRNet(SRModel):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C, sH, sW), about [0, 1]."""

    def __init__(self, config: AttnSRNetConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.channels, config.scale
        self.head = nn.Conv2d(config.in_channels, c, 3, padding=1)
        self.body = nn.Sequential(
            *(AttentionBlock(
                channels=c, context_kernel=config.context_kernel,
                context_dilation=config.context_dilation, attention=config.attention,
            )
              for _ in range(config.n_blocks))
        )
        self.fuse = nn.Conv2d(c, c, 3, padding=1)
        self.tail = nn.Conv2d(c, config.in_channels * s * s, 3, padding=1)
        self.shuffle = nn.PixelShuffle(s)
        # the bilinear skip as a fixed LR-space conv (inference; not in the state dict)
        self.register_buffer("bilinear", bilinear_kernel(s, config.in_channels),
                             persistent=False)

    def forward(self, lr: Tensor) -> Tensor:
        s = self.config.scale
        if torch.is_grad_enabled():
            feat = self.head(lr)
            feat = self.fuse(self.body(feat)) + feat
            base = F.interpolate(lr, scale_factor=s, mode="bilinear", align_corners=False)
            return self.shuffle(self.tail(feat)) + base
        # inference: the same sums, into buffers that are not needed afterwards
        feat = _few_channel_conv(lr, self.head.weight, self.head.bias)
        out = self.tail(self.fuse(self.body(feat)).add_(feat))
        if torch.onnx.is_in_onnx_export():  # graphs (and their int8 calibration) keep the
            # Resize node, so the first and last convs stay the network's own
            base = F.interpolate(lr, scale_factor=s, mode="bilinear", align_corners=False)
            return base.add_(self.shuffle(out))
        # the bilinear skip added before the pixel shuffle, in LR space (a 3x3 conv of the
        # edge-padded input: 1 ms instead of 7 ms for a 256x256 input, no full-size add)
        out.add_(_few_channel_conv(F.pad(lr, (1, 1, 1, 1), mode="replicate"),
                                   self.bilinear.to(lr.dtype), None, padding=0))
        return self.shuffle(out)

    def traits(self) -> ModelTraits:
        # 3x3 convs: 2 per block + head/fuse/tail; the dilated context adds d*(k//2) per block;
        # bilinear skip: 1 pixel.
        cfg = self.config
        context = cfg.context_dilation * (cfg.context_kernel // 2) if cfg.attention else 0
        rf = 3 + cfg.n_blocks * (2 + context)
        return ModelTraits(receptive_field=rf, bf16_safe=True, fp16_safe=True)


def deepen(model: AttnSRNet, insert_after: Sequence[int]) -> AttnSRNet:
    """A deeper copy of ``model`` that computes the same function: one new block after each
    old block index in ``insert_after`` (0-based, repeats allowed), its last conv zeroed so
    that it starts as the identity (``x + gate(0) = x``); training then lets it learn.

    The new blocks' other weights are drawn from the global torch RNG (seed it first).
    """
    n_old = model.config.n_blocks
    if any(i < 0 or i >= n_old for i in insert_after):
        raise ValueError(f"insert_after: block indices are 0..{n_old - 1}, "
                         f"got {list(insert_after)}")
    grown = AttnSRNet(replace(model.config, n_blocks=n_old + len(insert_after)))
    old_blocks = list(model.body)
    new_blocks: list[nn.Module] = []
    for i, block in enumerate(old_blocks):
        new_blocks.append(block)
        for _ in range(list(insert_after).count(i)):
            fresh = grown.body[len(new_blocks)]
            nn.init.zeros_(fresh.conv2.weight)
            nn.init.zeros_(fresh.conv2.bias)
            new_blocks.append(fresh)
    state = {f"body.{i}.{k}": v
             for i, block in enumerate(new_blocks) for k, v in block.state_dict().items()}
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith("body.")})
    grown.load_state_dict(state)
    return grown.train(model.training)


def channel_importance(model: AttnSRNet, lr: Tensor) -> tuple[Tensor, list[Tensor]]:
    """How much each channel carries, measured on the LR batch ``lr`` (B, C, H, W) in [0, 1].

    Returns ``(stream, inner)``: ``stream`` (channels,) for the residual stream that the head
    writes and every block reads (RMS over all its states x the L2 norm of the weights that
    read it), ``inner[i]`` (channels,) for block ``i``'s hidden layer (RMS after the
    activation x the norm of ``conv2``'s weights that read it).
    """
    states: list[Tensor] = []
    hidden: list[Tensor] = []
    with torch.no_grad():
        feat = model.head(lr)
        x = feat
        states.append(x)
        for block in model.body:
            h = block.act(block.conv1(x))
            hidden.append(h.pow(2).mean((0, 2, 3)).sqrt()
                          * block.conv2.weight.pow(2).sum((0, 2, 3)).sqrt())
            x = x + block.attn(block.conv2(h))
            states.append(x)
        states.append(model.fuse(x) + feat)
        rms = torch.stack([s.pow(2).mean((0, 2, 3)) for s in states]).mean(0).sqrt()
        readers = [b.conv1.weight for b in model.body] + [model.fuse.weight, model.tail.weight]
        norm = sum(w.pow(2).sum((0, 2, 3)) for w in readers).sqrt()
    return rms * norm, hidden


def prune(model: AttnSRNet, channels: int, lr: Tensor,
          reference: AttnSRNet | None = None) -> AttnSRNet:
    """A narrower copy of ``model`` (``channels`` features instead of ``config.channels``):
    the residual-stream channels and each block's hidden channels that carry the most on the
    LR batch ``lr`` (:func:`channel_importance`) are kept, with their weights; the others are
    dropped. The copy approximates the source and is meant to be fine-tuned (``init_from``).

    ``reference``: choose the channels by that network's importance instead (same
    config). Two networks fine-tuned from one parent (the clean and the real-world
    weights that ``--denoise`` interpolates) keep the same channels this way, so their
    narrowed copies still correspond channel by channel and can be interpolated.

    On CPUs with 16-float vectors (AVX-512) a 3x3 conv over 32 channels takes half the time
    of one over 40 (40 is computed as 48), so 40 -> 32 halves the network's cost.
    """
    cfg = model.config
    if not 1 <= channels <= cfg.channels:
        raise ValueError(f"channels: 1..{cfg.channels}, got {channels}")
    if reference is not None and reference.config != cfg:
        raise ValueError("reference: a network of the same config is needed")
    stream, inner = channel_importance(reference if reference is not None else model, lr)
    keep = stream.topk(channels).indices.sort().values
    small = AttnSRNet(replace(cfg, channels=channels))
    src = model.state_dict()
    state: dict[str, Tensor] = {}

    def take(name: str, rows: Tensor | None, cols: Tensor | None) -> None:
        w = src[name]
        if rows is not None:
            w = w.index_select(0, rows)
        if cols is not None and w.dim() > 1:
            w = w.index_select(1, cols)
        state[name] = w.clone()

    take("head.weight", keep, None)
    take("head.bias", keep, None)
    for i, imp in enumerate(inner):
        hid = imp.topk(channels).indices.sort().values
        pre = f"body.{i}."
        take(pre + "conv1.weight", hid, keep)
        take(pre + "conv1.bias", hid, None)
        take(pre + "conv2.weight", keep, hid)
        take(pre + "conv2.bias", keep, None)
        if cfg.attention:
            take(pre + "attn.context.weight", keep, None)  # depthwise: (C, 1, k, k)
            take(pre + "attn.context.bias", keep, None)
            take(pre + "attn.gate.weight", keep, keep)
            take(pre + "attn.gate.bias", keep, None)
    take("fuse.weight", keep, keep)
    take("fuse.bias", keep, None)
    take("tail.weight", None, keep)
    take("tail.bias", None, None)
    small.load_state_dict(state)
    return small.train(model.training)


register_preset(
    "attnsr_lite",
    "attnsr_net",
    description="attnsr's own CPU-fast network: contextual pixel attention (bundled default)",
    channels=40,
    n_blocks=6,
)
register_preset(
    "attnsr_base",
    "attnsr_net",
    description="attnsr_net, wider and deeper (better quality, ~3x slower)",
    channels=64,
    n_blocks=10,
)

# Weights trained by this project (src/attnsr/weights/<files>/, each with a MODEL_CARD.md).
register_pretrained(
    "attnsr_lite", "x4", scale=4, files="attnsr-x4", aliases=("attnsr-x4",),
    overrides={"n_blocks": 8}, train_config="configs/attnsr_lite8_x4_scaleaug.yaml",
    description="clean MATLAB-bicubic inputs (the papers' benchmarks), 8 blocks")
register_pretrained(
    "attnsr_lite", "x4_c32", scale=4, files="attnsr-x4-c32", aliases=("attnsr-x4-c32",),
    overrides={"n_blocks": 8, "channels": 32}, train_config="configs/attnsr_lite32_x4.yaml",
    description="clean inputs, 32 channels: 1.5-2x faster than attnsr-x4 on CPUs, -0.04 dB "
                "Set14; the --denoise partner of attnsr-real-x4")
register_pretrained(
    "attnsr_lite", "x3", scale=3, files="attnsr-x3", aliases=("attnsr-x3",),
    train_config="configs/attnsr_lite_x3_anneal.yaml",
    description="clean MATLAB-bicubic inputs (the papers' benchmarks)")
register_pretrained(
    "attnsr_lite", "x2", scale=2, files="attnsr-x2", aliases=("attnsr-x2",),
    train_config="configs/attnsr_lite_x2.yaml",
    description="clean MATLAB-bicubic inputs (the papers' benchmarks)")
register_pretrained(
    "attnsr_lite", "real_x4", scale=4, files="attnsr-real-x4", aliases=("attnsr-real-x4",),
    overrides={"n_blocks": 8, "channels": 32}, degradation="real",
    train_config="configs/attnsr_lite32_real_x4.yaml",
    description="real photos: JPEG, noise, blur (the default at x4), 8 blocks, 32 channels")
register_pretrained(
    "attnsr_lite", "real_x2", scale=2, files="attnsr-real-x2", aliases=("attnsr-real-x2",),
    degradation="real", train_config="configs/attnsr_lite_real_x2.yaml",
    description="real photos: JPEG, noise, blur (the default at x2)")
