"""SAFMN: feature-modulation layers against their definitions, the traced (gather) path
against the eager operators, and the official key layouts (paper and NTIRE 2023 models)
detected and loaded strictly, with outputs equal to the official computation written
here with torch.nn.functional."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnsr.layers.modulation import (
    GRN,
    SAFM,
    LayerNorm2d,
    adaptive_max_pool2d_gather,
    nearest_resize_gather,
)
from attnsr.models import create_model
from attnsr.models.safmn import SAFMNConfig
from attnsr.resolver import load_pretrained


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ layers


@pytest.mark.parametrize("factor", [2, 4, 8, 16])
def test_gather_pooling_equals_adaptive_max_pool(factor: int) -> None:
    sizes = [(factor, factor), (17, 23), (31, 16), (57, 86), (70, 70), (factor + 1, 2 * factor + 3)]
    for h, w in sizes:
        if min(h, w) < factor:
            continue
        x = _rand(2, 3, h, w, seed=h * w)
        ref = F.adaptive_max_pool2d(x, (h // factor, w // factor))
        assert torch.equal(adaptive_max_pool2d_gather(x, factor), ref), (h, w)
        up = nearest_resize_gather(ref, x)
        assert torch.equal(up, F.interpolate(ref, size=(h, w), mode="nearest")), (h, w)


def test_safm_against_hand_computation() -> None:
    """Two levels, delta depth-wise kernels, identity aggregation: the map is
    ``gelu(cat(x0, nearest(maxpool2(x1))))`` and the output that times ``x``."""
    m = SAFM(channels=4, n_levels=2)
    with torch.no_grad():
        for conv in m.mfr:
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = 1.0
            conv.bias.zero_()
        m.aggr.weight.copy_(torch.eye(4)[:, :, None, None])
        m.aggr.bias.zero_()
    x = _rand(1, 4, 4, 6)
    pooled = x[:, 2:].reshape(1, 2, 2, 2, 3, 2).amax(dim=(3, 5))  # 2x2 blocks
    up = pooled.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    gate = F.gelu(torch.cat([x[:, :2], up], dim=1))
    torch.testing.assert_close(m.weights(x), gate, rtol=0, atol=1e-6)
    torch.testing.assert_close(m(x), gate * x, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace
def test_safm_traced_equals_eager_at_other_sizes() -> None:
    torch.manual_seed(0)
    m = SAFM(channels=8, n_levels=4, pool_offset=1).eval()
    traced = torch.jit.trace(m, _rand(1, 8, 32, 32))
    for h, w in [(16, 16), (17, 23), (45, 33)]:
        x = _rand(1, 8, h, w, seed=h)
        assert torch.equal(traced(x), m(x)), (h, w)


def test_layer_norm_and_grn_definitions() -> None:
    x = _rand(2, 6, 5, 7)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.copy_(torch.linspace(0.5, 2, 6))
        ln.bias.copy_(torch.linspace(-1, 1, 6))
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, rtol=0, atol=1e-5)
    grn = GRN(6)
    assert torch.equal(grn(x), x)  # zero init: identity
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    norms = x.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(grn(x), x * norms / (norms.mean(1, keepdim=True) + 1e-6) + x)


def test_min_size_is_enforced_by_traits() -> None:
    assert create_model("safmn", scale=4, dim=8, n_blocks=1).traits().min_size == 8
    assert create_model("safmn_ntire", scale=4, dim=8, n_blocks=1).traits().min_size == 16
    with pytest.raises(ValueError, match="multiple of n_levels"):
        SAFMNConfig(dim=10)


# ------------------------------------------------------------- official layouts


def official_state_dict(*, dim: int, n_blocks: int, scale: int, ntire: bool
                        ) -> dict[str, torch.Tensor]:
    """Keys and shapes of the official ``SAFMN`` (``safmn_arch.py``) or ``SAFMN_NTIRE``
    (``team15_SAFMN.py``) modules, random values."""
    shapes: dict[str, tuple[int, ...]] = {}
    if ntire:
        shapes |= {"norm.gamma": (1, dim, 1, 1), "norm.beta": (1, dim, 1, 1)}
    shapes |= {"to_feat.weight": (dim, 3, 3, 3), "to_feat.bias": (dim,)}
    q, h = dim // 4, 2 * dim
    for i in range(n_blocks):
        p = f"feats.{i}."
        if not ntire:
            for n in ("norm1", "norm2"):
                shapes |= {p + n + ".weight": (dim,), p + n + ".bias": (dim,)}
        for lvl in range(4):
            shapes[p + f"safm.mfr.{lvl}.weight"] = (q, 1, 3, 3)
            if not ntire:
                shapes[p + f"safm.mfr.{lvl}.bias"] = (q,)
        shapes[p + "safm.aggr.weight"] = (dim, dim, 1, 1)
        shapes[p + "ccm.ccm.0.weight"] = (h, dim, 3, 3)
        shapes[p + "ccm.ccm.2.weight"] = (dim, h, 1, 1)
        if not ntire:
            shapes |= {p + "safm.aggr.bias": (dim,), p + "ccm.ccm.0.bias": (h,),
                       p + "ccm.ccm.2.bias": (dim,)}
    shapes |= {"to_img.0.weight": (3 * scale**2, dim, 3, 3), "to_img.0.bias": (3 * scale**2,)}
    gen = torch.Generator().manual_seed(3)
    return {k: 0.2 * torch.randn(s, generator=gen) for k, s in shapes.items()}


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, *, n_blocks: int,
                     scale: int, ntire: bool) -> torch.Tensor:
    """The authors' forward pass, written from their code with functional ops."""

    def conv(t: torch.Tensor, name: str, **kw: int) -> torch.Tensor:
        return F.conv2d(t, sd[name + ".weight"], sd.get(name + ".bias"), **kw)

    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        u = t.mean(1, keepdim=True)
        s = (t - u).pow(2).mean(1, keepdim=True)
        t = (t - u) / torch.sqrt(s + 1e-6)
        return sd[name + ".weight"][:, None, None] * t + sd[name + ".bias"][:, None, None]

    def safm(t: torch.Tensor, p: str) -> torch.Tensor:
        h, w = t.shape[-2:]
        out = []
        for i, xc in enumerate(t.chunk(4, dim=1)):
            g = xc.shape[1]
            if i > 0:
                f = 2 ** (i + int(ntire))
                s = F.adaptive_max_pool2d(xc, (h // f, w // f))
                s = F.interpolate(conv(s, p + f"mfr.{i}", padding=1, groups=g), size=(h, w),
                                  mode="nearest")
            else:
                s = conv(xc, p + f"mfr.{i}", padding=1, groups=g)
            out.append(s)
        return F.gelu(conv(torch.cat(out, 1), p + "aggr")) * t

    def ccm(t: torch.Tensor, p: str) -> torch.Tensor:
        return conv(F.gelu(conv(t, p + "ccm.0", padding=1)), p + "ccm.2")

    y = conv(x, "to_feat", padding=1)
    if ntire:
        gx = torch.norm(y, p=2, dim=(2, 3), keepdim=True)
        y = sd["norm.gamma"] * (y * (gx / (gx.mean(1, keepdim=True) + 1e-6))) + sd["norm.beta"] + y
    feat = y
    for i in range(n_blocks):
        p = f"feats.{i}."
        if ntire:
            y = safm(y, p + "safm.") + y
            y = ccm(y, p + "ccm.") + y
        else:
            y = safm(ln(y, p + "norm1"), p + "safm.") + y
            y = ccm(ln(y, p + "norm2"), p + "ccm.") + y
    if ntire:
        ident = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        return F.pixel_shuffle(conv(y, "to_img.0", padding=1), scale) + ident
    return F.pixel_shuffle(conv(y + feat, "to_img.0", padding=1), scale)


@pytest.mark.parametrize(("ntire", "scale"), [(False, 4), (False, 2), (True, 4)])
def test_official_layout_detected_and_matches_official_forward(
    tmp_path: Path, ntire: bool, scale: int
) -> None:
    sd = official_state_dict(dim=8, n_blocks=2, scale=scale, ntire=ntire)
    torch.save({"params": sd}, tmp_path / "safmn.pth")
    desc = load_pretrained(tmp_path / "safmn.pth")  # strict
    assert desc.arch == "safmn"
    assert desc.config == SAFMNConfig(scale=scale, dim=8, n_blocks=2, ntire=ntire)
    x = torch.rand(1, 3, 19, 22, generator=torch.Generator().manual_seed(5))
    desc.model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        got = desc.model(x)
    ref = official_forward(sd, x, n_blocks=2, scale=scale, ntire=ntire)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_detect_rejects_other_layouts() -> None:
    from attnsr.models.safmn import _detect_safmn

    sd = official_state_dict(dim=8, n_blocks=1, scale=4, ntire=False)
    assert _detect_safmn({k: v for k, v in sd.items() if not k.startswith("to_img")}) is None
    sd["to_img.0.weight"] = torch.zeros(47, 8, 3, 3)  # not 3 * s^2
    assert _detect_safmn(sd) is None
