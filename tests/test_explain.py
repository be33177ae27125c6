"""attnsr.explain: attention capture (outputs untouched, maps well-formed), LAM
(completeness, diffusion index) and the ``attnsr explain`` command."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from attnsr.descriptor import describe
from attnsr.explain import AttentionRecorder, LAMConfig, diffusion_index, gini
from attnsr.explain.lam import blur, blur_path, context_region, local_attribution_map
from attnsr.layers.channel import ChannelAttention, ContrastChannelAttention
from attnsr.layers.contextual import ContextualPixelAttention
from attnsr.layers.esa import ESA
from attnsr.layers.nonlocal_attention import NonLocalAttention, NonLocalSparseAttention
from attnsr.layers.pixel import PixelAttention
from attnsr.layers.spatial import CBAM
from attnsr.layers.window import SwinTransformerBlock
from attnsr.models import create_model, get_arch, get_preset, list_models

WS = 4  # window size of the tiny Swin blocks


class TinyAttentionNet(nn.Module):
    """Every attention layer type in one small network (B, 3, H, W) -> (B, 3, 2H, 2W);
    H, W multiples of ``WS`` and >= 15 (ESA)."""

    scale = 2

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.ca = ChannelAttention(channels=c, reduction=4)
        self.cca = ContrastChannelAttention(channels=c, reduction=4)
        self.cbam = CBAM(channels=c, reduction=4)
        self.pa = PixelAttention(channels=c)
        self.esa = ESA(channels=c, esa_channels=4)
        self.cpa = ContextualPixelAttention(channels=c, kernel_size=5)
        self.swin = nn.ModuleList(
            SwinTransformerBlock(c, 2, window_size=WS, shift_size=s) for s in (0, WS // 2)
        )
        self.nl = NonLocalAttention(c)
        self.nls = NonLocalSparseAttention(c, reduction=2, n_hashes=2, chunk_size=16)
        self.tail = nn.Sequential(nn.Conv2d(c, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        f = self.cpa(self.esa(self.pa(self.cbam(self.cca(self.ca(self.head(x)))))))
        B, C, H, W = f.shape
        t = f.flatten(2).transpose(1, 2)  # B, H*W, C
        for blk in self.swin:
            t = blk(t, (H, W))
        f = t.transpose(1, 2).reshape(B, C, H, W)
        return self.tail(self.nls(self.nl(f)))


@pytest.fixture(scope="module")
def tiny() -> TinyAttentionNet:
    torch.manual_seed(0)
    return TinyAttentionNet().eval()


@pytest.fixture(scope="module")
def lr() -> Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 16, 20)


def _record(model: nn.Module, x: Tensor, **kw: object) -> tuple[Tensor, AttentionRecorder]:
    with torch.no_grad(), AttentionRecorder(model, **kw) as rec:
        return model(x), rec


# ------------------------------------------------------------------------ capture


def test_recorder_leaves_outputs_bit_identical(tiny: TinyAttentionNet, lr: Tensor) -> None:
    with torch.no_grad():
        plain = tiny(lr)
    recorded, rec = _record(tiny, lr, query=(3, 5))
    assert torch.equal(plain, recorded)
    with torch.no_grad():
        assert torch.equal(plain, tiny(lr))  # hooks are gone after the block
    assert all(not m._forward_pre_hooks for m in tiny.modules())
    assert list(rec.maps) == ["ca", "cca", "cbam.channel", "cbam.spatial", "pa", "esa",
                              "cpa", "swin.0.attn", "swin.1.attn", "nl", "nls"]


# what each architecture's attention shows up as (archs not listed: outputs only)
EXPECTED_KINDS = {"attnsr_net": {"spatial"}, "rcan": {"channel"}, "imdn": {"channel"},
                  "pan": {"spatial"}, "rlfn": {"spatial"}, "swinir": {"query"},
                  "nlsn": {"query"}, "edsr": set(), "bicubic": set(), "hitsr": {"query"},
                  "dscf": {"spatial"}, "safmn": {"spatial"}, "bsrn": {"spatial", "channel"},
                  "bsrn_s": {"spatial"},  # a preset name overrides its arch's entry
                  "span": {"spatial"}}


def _tiny_overrides(name: str) -> dict[str, object]:
    """The arch module's ``TINY`` overrides (attnsr_net: its own small config)."""
    arch = get_arch(get_preset(name).arch)
    tiny = getattr(importlib.import_module(arch.model_cls.__module__), "TINY", None)
    return dict(tiny) if tiny is not None else {"channels": 8, "n_blocks": 2}


@pytest.mark.parametrize("name", list_models())
def test_zoo_models_bit_identical(name: str) -> None:
    torch.manual_seed(0)
    overrides = _tiny_overrides(name) if name != "bicubic" else {}
    desc = describe(create_model(name, scale=2, **overrides))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        plain = desc.run(x)
        with AttentionRecorder(desc, query=(4, 9)) as rec:
            recorded = desc.run(x)
    assert torch.equal(plain, recorded)
    kinds = {m.kind for m in rec.maps.values()}
    expected = EXPECTED_KINDS.get(name, EXPECTED_KINDS.get(desc.arch))
    if expected is not None:
        assert kinds == expected


def test_channel_weights_in_unit_interval(tiny: TinyAttentionNet, lr: Tensor) -> None:
    _, rec = _record(tiny, lr)
    chans = rec.of_kind("channel")
    assert list(chans) == ["ca", "cca", "cbam.channel"]
    for m in chans.values():
        assert m.tensor.shape == (2, 8)
        assert bool(((m.tensor > 0) & (m.tensor < 1)).all())
    # the captured weights are the layer's own gates
    with torch.no_grad():
        ref = tiny.ca.weights(tiny.head(lr)).flatten(1)
    torch.testing.assert_close(chans["ca"].tensor, ref, rtol=0, atol=0)


def test_spatial_maps_shapes_and_range(tiny: TinyAttentionNet, lr: Tensor) -> None:
    _, rec = _record(tiny, lr)
    shapes = {k: tuple(m.tensor.shape) for k, m in rec.of_kind("spatial").items()}
    assert shapes == {"cbam.spatial": (2, 1, 16, 20), "pa": (2, 8, 16, 20),
                      "esa": (2, 8, 16, 20), "cpa": (2, 8, 16, 20)}
    for m in rec.of_kind("spatial").values():
        assert bool(((m.tensor > 0) & (m.tensor < 1)).all())
    _, rec = _record(tiny, lr, channel_mean=True, kinds=("spatial",))
    assert {tuple(m.tensor.shape) for m in rec.maps.values()} == {(2, 1, 16, 20)}


@pytest.mark.parametrize("query", [(3, 5), (0, 0), (19, 15), (10, 8)])
def test_query_distributions_sum_to_one(
    tiny: TinyAttentionNet, lr: Tensor, query: tuple[int, int]
) -> None:
    _, rec = _record(tiny, lr, query=query, kinds=("query",))
    assert set(rec.maps) == {"swin.0.attn", "swin.1.attn", "nl", "nls"}
    for name, m in rec.maps.items():
        assert m.tensor.shape == (2, 1, 16, 20)
        assert m.info["query"] == query
        torch.testing.assert_close(m.tensor.sum(dim=(1, 2, 3)), torch.ones(2),
                                   atol=1e-5, rtol=0, msg=name)
        assert bool((m.tensor >= 0).all())


@pytest.mark.parametrize("query", [(3, 5), (0, 0), (19, 15), (1, 14)])
def test_window_query_stays_in_its_window(
    tiny: TinyAttentionNet, lr: Tensor, query: tuple[int, int]
) -> None:
    """Regular windows: the support is the query's aligned window. Shifted windows: all
    mass within WS - 1 pixels of the query (no wrap-around: masked pairs get ~0)."""
    _, rec = _record(tiny, lr, query=query, kinds=("query",))
    qx, qy = query
    ys, xs = torch.nonzero(rec.maps["swin.0.attn"].tensor[0, 0] > 0, as_tuple=True)
    assert set(ys.tolist()) == set(range(qy // WS * WS, qy // WS * WS + WS))
    assert set(xs.tolist()) == set(range(qx // WS * WS, qx // WS * WS + WS))
    shifted = rec.maps["swin.1.attn"].tensor[0, 0]
    ys, xs = torch.nonzero(shifted > 1e-12, as_tuple=True)
    assert int((ys - qy).abs().max()) < WS and int((xs - qx).abs().max()) < WS
    assert rec.maps["swin.1.attn"].info["shift"] == WS // 2


def test_window_query_matches_layer_probabilities(tiny: TinyAttentionNet, lr: Tensor) -> None:
    """The scattered row equals the layer's own probabilities (all windows, taken with
    ``return_attn=True`` from a plain forward hook)."""
    qx, qy, s = 6, 9, WS // 2
    _, rec = _record(tiny, lr, query=(qx, qy), kinds=("query",))
    kept: list[Tensor] = []

    def keep_probs(m: nn.Module, args: tuple, kwargs: dict, out: Tensor) -> None:
        kept.append(m.forward(*args, **kwargs, return_attn=True)[1])  # nW*B, heads, N, N

    handle = tiny.swin[1].attn.register_forward_hook(keep_probs, with_kwargs=True)
    try:
        with torch.no_grad():
            tiny(lr)
    finally:
        handle.remove()
    probs = kept[0]
    sy, sx = (qy - s) % 16, (qx - s) % 20
    win, tok = (sy // WS) * (20 // WS) + sx // WS, (sy % WS) * WS + sx % WS
    ref = probs[win, :, tok].mean(dim=0)  # batch item 0: keys of the window, row-major
    got = rec.maps["swin.1.attn"].tensor[0, 0]
    keys = [got[(sy // WS * WS + t // WS + s) % 16, (sx // WS * WS + t % WS + s) % 20]
            for t in range(WS * WS)]
    torch.testing.assert_close(torch.stack(keys), ref, atol=1e-6, rtol=1e-5)


def test_nonlocal_query_matches_full_softmax(tiny: TinyAttentionNet, lr: Tensor) -> None:
    _, rec = _record(tiny, lr, query=(7, 3), kinds=("query",), include=["nl"])
    assert list(rec.maps) == ["nl"]
    with torch.no_grad():
        f = tiny.head(lr)
        f = tiny.cpa(tiny.esa(tiny.pa(tiny.cbam(tiny.cca(tiny.ca(f))))))
        B, C, H, W = f.shape
        t = f.flatten(2).transpose(1, 2)
        for blk in tiny.swin:
            t = blk(t, (H, W))
        f = t.transpose(1, 2).reshape(B, C, H, W)
        q = tiny.nl.theta(f).flatten(2)[:, :, 3 * W + 7]  # B, d
        k = tiny.nl.phi(f).flatten(2)  # B, d, N
        ref = torch.einsum("bd,bdn->bn", q, k).softmax(dim=-1).view(B, 1, H, W)
    torch.testing.assert_close(rec.maps["nl"].tensor, ref, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- LAM


def test_gini_and_diffusion_index() -> None:
    assert gini(np.ones(100)) == pytest.approx(0.0, abs=1e-12)
    one_hot = np.zeros(100)
    one_hot[7] = 3.0
    assert gini(one_hot) == pytest.approx(0.99)
    assert diffusion_index(np.ones((3, 8, 8))) == pytest.approx(100.0)
    assert gini(np.zeros(10)) == 0.0
    # scale invariant
    v = np.random.default_rng(0).random(50)
    assert gini(v) == pytest.approx(gini(7 * v))


def test_blur_path_endpoints() -> None:
    x = torch.rand(1, 3, 12, 12)
    path = blur_path(x, 2.0, 5)
    assert path.shape == (6, 3, 12, 12)
    assert torch.equal(path[-1:], x)
    torch.testing.assert_close(path[:1], blur(x, 2.0))
    # blurring keeps the mean (normalised kernel) and removes variance
    assert float(path[0].mean()) == pytest.approx(float(x.mean()), abs=2e-2)
    assert float(path[0].std()) < 0.5 * float(x.std())


def test_context_region() -> None:
    assert context_region((32, 40), (40, 20, 8, 8), 4, 3) == (7, 2, 8, 8)
    assert context_region((32, 40), (0, 0, 8, 8), 4, 3) == (0, 0, 5, 5)
    assert context_region((32, 40), (40, 20, 8, 8), 4, None) == (0, 0, 40, 32)


@pytest.mark.parametrize("objective", ["gradient", "sum"])
def test_lam_completeness(objective: str) -> None:
    torch.manual_seed(0)
    desc = describe(create_model("attnsr_lite", scale=2, channels=8, n_blocks=2))
    x = torch.rand(1, 3, 16, 16)
    res = local_attribution_map(desc, x, (12, 10, 6, 6),
                                LAMConfig(steps=24, sigma=3.0, objective=objective))
    delta = res.objective - res.baseline_objective
    assert abs(delta) > 1e-3  # a meaningful check: the blur changes the objective
    assert res.total == pytest.approx(delta, rel=0.05)
    assert res.completeness_error < 0.05
    assert res.attribution.shape == (3, 16, 16)
    assert float(res.saliency.max()) == pytest.approx(1.0)
    assert 0.0 < res.diffusion_index < 100.0


def test_lam_context_crop_exact_for_local_model() -> None:
    """Beyond the receptive field the crop changes nothing: a 1x1-conv model's LAM is
    the same with and without a context crop, and zero outside the patch footprint."""
    model = nn.Sequential(nn.Conv2d(3, 12, 1), nn.PixelShuffle(2)).eval()
    x = torch.rand(1, 3, 12, 12)
    cfg = LAMConfig(steps=8, sigma=1.0, objective="sum")
    full = local_attribution_map(model, x, (8, 8, 4, 4), cfg, scale=2)
    crop = local_attribution_map(model, x, (8, 8, 4, 4),
                                 LAMConfig(steps=8, sigma=1.0, objective="sum", context=3),
                                 scale=2)
    assert crop.region == (1, 1, 8, 8)
    outside = full.attribution.clone()
    outside[:, 4:6, 4:6] = 0
    assert float(outside.abs().max()) == 0.0
    # the blur near the crop border differs, so compare the footprint (exact locally)
    torch.testing.assert_close(full.attribution[:, 4:6, 4:6], crop.attribution[:, 4:6, 4:6],
                               atol=5e-2, rtol=0.2)


# ----------------------------------------------------------------------------- CLI


def _write_png(path: object, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx // 4 % 2) * 200, (yy * 255 // h), rng.integers(0, 255, (h, w))], -1)
    img = img.astype(np.uint8)
    Image.fromarray(img).save(path)
    return img


def test_cli_explain_writes_figures_and_numbers(tmp_path: object) -> None:
    from typer.testing import CliRunner

    from attnsr.checkpoint import save_pretrained
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app
    from attnsr.models.rcan import TINY

    _load_commands()
    lr_path, hr_path, out = tmp_path / "lr.png", tmp_path / "hr.png", tmp_path / "out"
    _write_png(lr_path, (16, 16))
    _write_png(hr_path, (66, 64), seed=1)  # taller than 4 x 16: cropped to 64 x 64
    ckpt = save_pretrained(create_model("rcan_small", scale=4, **TINY), tmp_path / "rcan")
    res = CliRunner().invoke(app, [
        "explain", str(lr_path), "--model", str(ckpt), "--hr", str(hr_path),
        "--patch", "20,24,12,12", "--query", "5,6", "--lam-steps", "3", "-o", str(out),
        "--blocks", "body.0.*", "--blocks", "-1"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "explain.json").read_text())
    assert report["query"] == [5, 6] and report["patch"] == [20, 24, 12, 12]
    assert report["model"]["scale"] == 4
    chans = report["attention"]["channel"]
    assert len(chans) == TINY["n_resgroups"] * TINY["n_resblocks"]
    assert all(0 < w < 1 for c in chans.values() for w in c["weights"])
    assert set(report["patch_metrics"]) == {"Bicubic", "SR"}
    assert report["patch_metrics"]["SR"]["psnr"] > 0
    assert report["lam"]["steps"] == 3
    for name in ("comparison.png", "channel_attention.png", "lam.png"):
        assert name in report["figures"]
        with Image.open(out / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200


def test_cli_explain_rejects_patch_outside(tmp_path: object) -> None:
    from typer.testing import CliRunner

    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    lr_path = tmp_path / "lr.png"
    _write_png(lr_path, (8, 8))
    res = CliRunner().invoke(app, ["explain", str(lr_path), "--model", "attnsr_lite",
                                   "--patch", "30,0,8,8", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "--patch 30,0,8,8" in res.output
    res = CliRunner().invoke(app, ["explain", str(lr_path), "--model", "attnsr_lite",
                                   "--query", "3", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--query" in res.output
