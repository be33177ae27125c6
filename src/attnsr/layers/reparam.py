"""Re-parameterisable convolutions: trained as several branches, run as one conv.

:class:`Conv3XC` is SPAN's (Wan et al. 2024) 3x3 convolution. In training it is a 1x1
skip plus an expanded 1x1 -> 3x3 -> 1x1 chain; all of it is linear, so for inference
the branches collapse exactly into a single 3x3 convolution (the authors' ``eval_conv``).

Keys match the official layouts: the training form stores ``sk`` and ``conv.{0,1,2}``
(the authors' training checkpoints also carry ``eval_conv``, a copy they recompute from
the branches on every evaluation forward: the SPAN converter drops it); the fused form
stores ``eval_conv`` only (the NTIRE 2024 challenge checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fuse_conv3xc(
    sk: nn.Conv2d, conv0: nn.Conv2d, conv1: nn.Conv2d, conv2: nn.Conv2d
) -> tuple[Tensor, Tensor]:
    """The single 3x3 kernel equal to ``conv2(conv1(conv0(pad(x)))) + sk(x)``.

    Args:
        sk: 1x1 skip, weight (O, I, 1, 1).
        conv0: 1x1 expansion, weight (gI, I, 1, 1).
        conv1: 3x3 without padding, weight (gO, gI, 3, 3).
        conv2: 1x1 projection, weight (O, gO, 1, 1).

    Returns:
        ``(weight (O, I, 3, 3), bias (O,))`` for a 3x3 conv with zero padding 1. Exact in
        real arithmetic, also at the borders: the training path pads *before* conv0, so a
        padded pixel reaches conv1 as conv0's bias, which the fused bias accounts for.
    """
    w0 = conv0.weight[:, :, 0, 0]  # gI, I
    w2 = conv2.weight[:, :, 0, 0]  # O, gO
    w01 = torch.einsum("omyx,mi->oiyx", conv1.weight, w0)  # gO, I, 3, 3
    b01 = conv1.bias + torch.einsum("omyx,m->o", conv1.weight, conv0.bias)  # gO
    weight = torch.einsum("po,oiyx->piyx", w2, w01)  # O, I, 3, 3
    bias = conv2.bias + w2 @ b01  # O
    weight = weight + F.pad(sk.weight, (1, 1, 1, 1))  # the 1x1 skip sits at the centre tap
    return weight, bias + sk.bias


class Conv3XC(nn.Module):
    """SPAN's re-parameterisable 3x3 convolution.

    Args:
        in_channels: I.
        out_channels: O.
        gain: expansion of the inner 3x3 conv (gI -> gO channels; SPAN: 2).
        fused: True builds the inference form only (one 3x3 conv, key ``eval_conv``);
            False the training form (keys ``sk``, ``conv.0``, ``conv.1``, ``conv.2``).

    Shapes: (B, I, H, W) -> (B, O, H, W). The training form runs its branches in training
    mode and the fused kernel (:meth:`fused_weights`, recomputed per call, as the authors
    do) in eval mode; both give the same output up to float rounding.
    """

    def __init__(self, *, in_channels: int, out_channels: int, gain: int = 2,
                 fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.eval_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            return
        self.sk = nn.Conv2d(in_channels, out_channels, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels * gain, 1),
            nn.Conv2d(in_channels * gain, out_channels * gain, 3),  # no padding: x is padded
            nn.Conv2d(out_channels * gain, out_channels, 1),
        )

    def fused_weights(self) -> tuple[Tensor, Tensor]:
        """``(weight (O, I, 3, 3), bias (O,))`` of the equivalent single 3x3 conv."""
        if self.fused:
            return self.eval_conv.weight, self.eval_conv.bias
        return fuse_conv3xc(self.sk, self.conv[0], self.conv[1], self.conv[2])

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        weight, bias = self.fused_weights()
        return F.conv2d(x, weight, bias, padding=1)


class ExpandedKernel(nn.Module):
    """A torch parametrization of a 3x3 conv's weight as a sum of linear branches (online
    re-parameterisation, as in OREPA, Hu et al. 2022, with the branches of SPAN's Conv3XC):

    ``weight = original + pad(skip) + project @ inner @ expand``, where ``skip`` is a 1x1
    kernel (O, I) at the centre tap and ``expand`` (gI, I) -> ``inner`` (gO, gI, 3, 3) ->
    ``project`` (O, gO) a linear 1x1 -> 3x3 -> 1x1 chain. ``skip`` and ``project`` start at
    zero, so attaching it leaves the function unchanged; training then moves every branch.

    The network computes with the one summed kernel (the conv costs what the plain conv
    costs; the kernel sum is tiny), so folding it back (:func:`fold_reparam`) is exact.
    Only the optimisation differs: a product of factors trained with Adam follows other
    paths than the kernel alone (Arora et al. 2018's implicit acceleration).
    """

    def __init__(self, out_channels: int, in_channels: int, gain: int = 2) -> None:
        super().__init__()
        self.skip = nn.Parameter(torch.zeros(out_channels, in_channels))
        self.expand = nn.Parameter(torch.empty(in_channels * gain, in_channels))
        self.inner = nn.Parameter(torch.empty(out_channels * gain, in_channels * gain, 3, 3))
        self.project = nn.Parameter(torch.zeros(out_channels, out_channels * gain))
        nn.init.kaiming_uniform_(self.expand, a=5 ** 0.5)
        nn.init.kaiming_uniform_(self.inner, a=5 ** 0.5)

    def forward(self, original: Tensor) -> Tensor:
        """``original`` (O, I, 3, 3) -> the summed kernel (O, I, 3, 3)."""
        chain = torch.einsum("po,omyx,mi->piyx", self.project, self.inner, self.expand)
        centre = F.pad(self.skip[:, :, None, None], (1, 1, 1, 1))
        return original + centre + chain


def _reparam_targets(model: nn.Module) -> list[nn.Conv2d]:
    """The dense 3x3 convolutions of ``model`` (groups 1, stride 1, dilation 1)."""
    return [m for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1
            and m.stride == (1, 1) and m.dilation == (1, 1)]


def attach_reparam(model: nn.Module, gain: int = 2) -> int:
    """Parametrize every dense 3x3 conv of ``model`` with :class:`ExpandedKernel`, in
    place (same function to float rounding); returns how many convs were expanded.
    ``conv.weight`` then reads as the summed kernel, so code that uses it directly (an
    inference path that calls ``F.conv2d(x, conv.weight)``) sees the right kernel."""
    from torch.nn.utils import parametrize

    convs = _reparam_targets(model)
    for conv in convs:
        o, i = conv.weight.shape[:2]
        branch = ExpandedKernel(o, i, gain).to(conv.weight.device, conv.weight.dtype)
        parametrize.register_parametrization(conv, "weight", branch)
    return len(convs)


def fold_reparam(model: nn.Module) -> nn.Module:
    """Replace every parametrized weight of ``model`` by its summed kernel, in place: plain
    ``nn.Conv2d`` convs again, with the state-dict keys of the unexpanded model.

    Safe on a ``copy.deepcopy`` of a parametrized model: the copy shares torch's generated
    ``Parametrized*`` classes with the original, and ``remove_parametrizations`` would
    delete the weight property from that shared class (breaking the original, e.g. the
    EMA model that is still training); here each module only gets its own class back.
    """
    from torch.nn.utils import parametrize

    for module in model.modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        if len(module.parametrizations) > 1:
            raise ValueError(f"{type(module).__name__}: only the weight may be parametrized")
        with torch.no_grad():
            weight = module.weight.detach().clone()
        module.__class__ = parametrize.type_before_parametrizations(module)
        del module.parametrizations
        module.weight = nn.Parameter(weight, requires_grad=True)
    return model
