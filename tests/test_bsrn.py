"""BSRN / BSRN-S: blueprint separable convs and their ESA against their definitions, the
contrast-aware channel attention against BSRN's formula, and the official key layouts
(BSRN ``Conv2d`` 1x1 convs, BSRN-S ``nn.Linear``) detected and loaded strictly, with
outputs equal to the official computation written here with torch.nn.functional."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnsr.layers.blueprint import BlueprintESA, BSConvU, Linear1x1
from attnsr.layers.channel import ContrastChannelAttention
from attnsr.models.bsrn import BSRNConfig, _detect_bsrn
from attnsr.resolver import load_pretrained


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ layers


def test_bsconvu_is_a_dense_conv_with_blueprint_kernels() -> None:
    """pw then dw equals one k x k conv with ``W[o, i] = pw[o, i] * dw[o]`` (+ dw bias)."""
    torch.manual_seed(0)
    m = BSConvU(5, 7)
    dense = m.pw.weight[:, :, 0, 0, None, None] * m.dw.weight  # 7, 5, 3, 3
    x = _rand(2, 5, 9, 11)
    torch.testing.assert_close(m(x), F.conv2d(x, dense, m.dw.bias, padding=1), rtol=0, atol=1e-5)


def test_linear1x1_equals_conv1x1() -> None:
    torch.manual_seed(0)
    lin = Linear1x1(6, 4)
    x = _rand(2, 6, 5, 3)
    ref = F.conv2d(x, lin.weight[:, :, None, None], lin.bias)
    torch.testing.assert_close(lin(x), ref, rtol=0, atol=1e-6)


def test_contrast_channel_attention_matches_bsrn_formula() -> None:
    """BSRN's CCALayer: ``stdv_channels(x) + avg_pool(x)`` (variance as sums / (H W))."""
    x = _rand(2, 32, 9, 13)
    mean = x.sum(3, keepdim=True).sum(2, keepdim=True) / (9 * 13)
    var = (x - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / (9 * 13)
    torch.manual_seed(0)
    cca = ContrastChannelAttention(channels=32, reduction=16)
    torch.testing.assert_close(cca.descriptor(x), var.pow(0.5) + mean, rtol=0, atol=1e-6)
    assert cca.conv_du[0].weight.shape == (2, 32, 1, 1)


@pytest.mark.parametrize("linear", [False, True])
def test_blueprint_esa_against_definition(linear: bool) -> None:
    torch.manual_seed(0)
    esa = BlueprintESA(channels=8, esa_channels=4, linear=linear)
    x = _rand(1, 8, 15, 20)
    gate = esa.weights(x)
    assert gate.shape == x.shape and bool(((gate > 0) & (gate < 1)).all())
    c1_ = esa.conv1(x)
    c1 = esa.conv2(c1_)
    assert c1.shape[-2:] == (7, 9)  # 3x3 stride 2, no padding
    v = F.max_pool2d(c1, 7, 3)
    c3 = esa.conv3_(F.gelu(esa.conv3(F.gelu(esa.conv_max(v)))))
    c3 = F.interpolate(c3, size=(15, 20), mode="bilinear", align_corners=False)
    ref = torch.sigmoid(esa.conv4(c3 + esa.conv_f(c1_)))
    torch.testing.assert_close(esa(x), x * ref, rtol=0, atol=0)
    assert isinstance(esa.conv2, torch.nn.Conv2d) == linear  # BSRN-S: plain strided conv


# ------------------------------------------------------------- official layouts


def official_state_dict(*, feats: int, n_blocks: int, scale: int, small: bool
                        ) -> dict[str, torch.Tensor]:
    """Keys and shapes of the official ``BSRN`` (``BSRN_arch.py``, Conv2d 1x1) or
    ``RFDNFINALB5`` (BSRN-S, ``rfdnfinalB5_arch.py`` with ``Blocks.BSConvU``: nn.Linear
    1x1 with bias), random values."""
    shapes: dict[str, tuple[int, ...]] = {}

    def pw(name: str, cin: int, cout: int, bias: bool = True) -> None:
        shapes[name + ".weight"] = (cout, cin) if small else (cout, cin, 1, 1)
        if bias or small:
            shapes[name + ".bias"] = (cout,)

    def bsconv(name: str, cin: int, cout: int) -> None:
        pw(name + ".pw", cin, cout, bias=False)
        shapes.update({name + ".dw.weight": (cout, 1, 3, 3), name + ".dw.bias": (cout,)})

    c, dc, f = feats, feats // 2, feats // 4
    bsconv("fea_conv", 12, c)
    for b in range(1, n_blocks + 1):
        p = f"B{b}."
        if small:
            shapes[p + "cw"] = (1, c)
        for i in (1, 2, 3):
            pw(p + f"c{i}_d", c, dc)
            bsconv(p + f"c{i}_r", c, c)
        bsconv(p + "c4", c, dc)
        pw(p + "c5", 4 * dc, c)
        pw(p + "esa.conv1", c, f)
        pw(p + "esa.conv_f", f, f)
        bsconv(p + "esa.conv_max", f, f)
        if small:
            shapes |= {p + "esa.conv2.weight": (f, f, 3, 3), p + "esa.conv2.bias": (f,)}
        else:
            bsconv(p + "esa.conv2", f, f)
        bsconv(p + "esa.conv3", f, f)
        bsconv(p + "esa.conv3_", f, f)
        pw(p + "esa.conv4", f, c)
        if small:
            pw(p + "conv_out", c, c)
        else:
            hidden = max(c // 16, 1)
            shapes |= {p + "cca.conv_du.0.weight": (hidden, c, 1, 1),
                       p + "cca.conv_du.0.bias": (hidden,),
                       p + "cca.conv_du.2.weight": (c, hidden, 1, 1),
                       p + "cca.conv_du.2.bias": (c,)}
    pw("c1", c * n_blocks, c)
    bsconv("c2", c, c)
    shapes |= {"upsampler.upsampleOneStep.0.weight": (3 * scale**2, c, 3, 3),
               "upsampler.upsampleOneStep.0.bias": (3 * scale**2,)}
    gen = torch.Generator().manual_seed(4)
    return {k: 0.2 * torch.randn(s, generator=gen) for k, s in shapes.items()}


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, *, n_blocks: int,
                     scale: int, small: bool) -> torch.Tensor:
    """The authors' forward pass (BSRN / RFDNFINALB5), with functional ops."""

    def pw(t: torch.Tensor, name: str) -> torch.Tensor:
        w, b = sd[name + ".weight"], sd.get(name + ".bias")
        if w.dim() == 2:  # nn.Linear over channels-last
            return F.linear(t.permute(0, 2, 3, 1), w, b).permute(0, 3, 1, 2)
        return F.conv2d(t, w, b)

    def bs(t: torch.Tensor, name: str, stride: int = 1, padding: int = 1) -> torch.Tensor:
        t = pw(t, name + ".pw")
        return F.conv2d(t, sd[name + ".dw.weight"], sd[name + ".dw.bias"], stride=stride,
                        padding=padding, groups=t.shape[1])

    def esa(t: torch.Tensor, p: str) -> torch.Tensor:
        c1_ = pw(t, p + "conv1")
        if small:
            c1 = F.conv2d(c1_, sd[p + "conv2.weight"], sd[p + "conv2.bias"], stride=2)
        else:
            c1 = bs(c1_, p + "conv2", stride=2, padding=0)
        v = F.max_pool2d(c1, 7, 3)
        c3 = bs(F.gelu(bs(F.gelu(bs(v, p + "conv_max")), p + "conv3")), p + "conv3_")
        c3 = F.interpolate(c3, t.shape[-2:], mode="bilinear", align_corners=False)
        return t * torch.sigmoid(pw(c3 + pw(c1_, p + "conv_f"), p + "conv4"))

    def block(t: torch.Tensor, p: str) -> torch.Tensor:
        d1 = F.gelu(pw(t, p + "c1_d"))
        r1 = F.gelu(bs(t, p + "c1_r") + t)
        d2 = F.gelu(pw(r1, p + "c2_d"))
        r2 = F.gelu(bs(r1, p + "c2_r") + r1)
        d3 = F.gelu(pw(r2, p + "c3_d"))
        r3 = F.gelu(bs(r2, p + "c3_r") + r2)
        r4 = F.gelu(bs(r3, p + "c4"))
        out = esa(pw(torch.cat([d1, d2, d3, r4], 1), p + "c5"), p + "esa.")
        if small:
            scaled = out * sd[p + "cw"][:, :, None, None]
            return pw(scaled, p + "conv_out") + t
        mean = out.mean(dim=(2, 3), keepdim=True)
        y = (out - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt() + mean
        y = F.relu(F.conv2d(y, sd[p + "cca.conv_du.0.weight"], sd[p + "cca.conv_du.0.bias"]))
        y = F.conv2d(y, sd[p + "cca.conv_du.2.weight"], sd[p + "cca.conv_du.2.bias"])
        return out * torch.sigmoid(y) + t

    fea = bs(torch.cat([x] * 4, 1), "fea_conv")
    outs, t = [], fea
    for b in range(1, n_blocks + 1):
        t = block(t, f"B{b}.")
        outs.append(t)
    trunk = F.gelu(pw(torch.cat(outs, 1), "c1"))
    lr = bs(trunk, "c2") + fea
    up = F.conv2d(lr, sd["upsampler.upsampleOneStep.0.weight"],
                  sd["upsampler.upsampleOneStep.0.bias"], padding=1)
    return F.pixel_shuffle(up, scale)


@pytest.mark.parametrize(("small", "scale", "feats"),
                         [(False, 4, 32), (False, 3, 16), (True, 4, 16)])
def test_official_layout_detected_and_matches_official_forward(
    tmp_path: Path, small: bool, scale: int, feats: int
) -> None:
    sd = official_state_dict(feats=feats, n_blocks=2, scale=scale, small=small)
    torch.save({"params": sd}, tmp_path / "net_g_BSRN.pth")
    desc = load_pretrained(tmp_path / "net_g_BSRN.pth")  # strict
    assert desc.arch == "bsrn"
    assert desc.config == BSRNConfig(scale=scale, feature_channels=feats, n_blocks=2,
                                     s_variant=small)
    x = torch.rand(1, 3, 17, 21, generator=torch.Generator().manual_seed(5))
    desc.model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        got = desc.model(x)
    ref = official_forward(sd, x, n_blocks=2, scale=scale, small=small)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_detect_needs_cca_or_channel_scale() -> None:
    sd = official_state_dict(feats=16, n_blocks=1, scale=4, small=False)
    assert _detect_bsrn(sd) is not None
    no_attention = {k: v for k, v in sd.items() if ".cca." not in k}
    assert _detect_bsrn(no_attention) is None
    assert _detect_bsrn({k: v for k, v in sd.items() if not k.startswith("upsampler")}) is None
