"""HiT-SR: the official key layout (written out here from the authors' module tree,
random values) is detected and loads strictly; spatial-channel correlation against a
hand computation; periodic reflection against ``F.pad``; the explain map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnsr.descriptor import describe
from attnsr.explain.capture import AttentionRecorder
from attnsr.layers.hierarchical import SpatialChannelCorrelation, reflect_index
from attnsr.models.hitsr import HiTSR, HiTSRConfig, detect_hitsr
from attnsr.models.registry import create_model
from attnsr.resolver import resolve


def official_shapes(
    *, embed: int, depths: tuple[int, ...], heads: tuple[int, ...], cells: tuple[int, ...],
    scale: int, conv_ffn: bool, mlp_ratio: float = 2.0,
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``XiangZ-0/HiT-SR``'s ``HiT_SRF`` (``conv_ffn``) / ``HiT_SIR``
    state dict (``upsampler='pixelshuffledirect'``, ``resi_connection='1conv'``);
    ``cells[j]``: the ``spatial_linear`` width of block ``j``, ``(ws / base)^2`` or 1."""
    C, c5, p, hid = embed, embed // 5, embed // 16, int(embed * mlp_ratio)

    def lin(name: str, o: int, i: int) -> dict[str, tuple[int, ...]]:
        return {f"{name}.weight": (o, i), f"{name}.bias": (o,)}

    def conv(name: str, o: int, i: int, k: int) -> dict[str, tuple[int, ...]]:
        return {f"{name}.weight": (o, i, k, k), f"{name}.bias": (o,)}

    def norm(name: str, n: int) -> dict[str, tuple[int, ...]]:
        return {f"{name}.weight": (n,), f"{name}.bias": (n,)}

    sd = {**conv("conv_first", C, 3, 3), **norm("patch_embed.norm", C)}
    for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        for j in range(depth):
            b = f"layers.{i}.residual_group.blocks.{j}."
            a = b + "correlation."
            sd |= {**norm(b + "norm1", C), **norm(b + "norm2", C),
                   **conv(a + "qv.conv.0", c5, C, 1), **conv(a + "qv.conv.2", c5, c5, 3),
                   **conv(a + "qv.conv.4", C, c5, 1), **conv(a + "qv.linear", C, C, 1),
                   **lin(a + "proj", C, C), **lin(a + "spatial_linear", 1, cells[j]),
                   **lin(a + "pos.pos_proj", p, 2), **norm(a + "pos.pos1.0", p),
                   **lin(a + "pos.pos1.2", p, p), **norm(a + "pos.pos2.0", p),
                   **lin(a + "pos.pos2.2", p, p), **norm(a + "pos.pos3.0", p),
                   **lin(a + "pos.pos3.2", h, p), **lin(b + "mlp.fc1", hid, C),
                   **lin(b + "mlp.fc2", C, hid)}
            if conv_ffn:
                sd[b + "mlp.dwconv.depthwise_conv.0.weight"] = (hid, 1, 5, 5)
                sd[b + "mlp.dwconv.depthwise_conv.0.bias"] = (hid,)
        sd |= conv(f"layers.{i}.conv", C, C, 3)
    return sd | {**norm("norm", C), **conv("conv_after_body", C, C, 3),
                 **conv("upsample.0", scale * scale * 3, C, 3)}


def random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


@pytest.mark.parametrize("conv_ffn", [True, False], ids=["srf", "sir"])
def test_official_layout_is_detected_and_loads_strictly(conv_ffn: bool, tmp_path: Path) -> None:
    # official base window 8, ratios (0.5, 1, 2): windows 4, 8, 16 -> widths 1, 1, 4
    shapes = official_shapes(embed=32, depths=(3, 2), heads=(2, 4), cells=(1, 1, 4), scale=3,
                             conv_ffn=conv_ffn)
    sd = random_state(shapes)
    cfg = detect_hitsr(sd)
    assert cfg == {"scale": 3, "in_channels": 3, "embed_dim": 32, "depths": (3, 2),
                   "num_heads": (2, 4), "base_win_size": 8,
                   "hier_win_ratios": (0.5, 1.0, 2.0), "mlp_ratio": 2.0,
                   "conv_ffn": conv_ffn, "patch_norm": True}
    model = HiTSR(HiTSRConfig(**cfg))
    model.load_state_dict(sd, strict=True)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    path = tmp_path / "HiT-SRF-3x.pth"
    torch.save({"params": sd}, path)
    runner = resolve(str(path), scale=3, backend="torch")
    assert runner.model.config.hier_win_ratios == (0.5, 1.0, 2.0)
    out = runner.run(torch.rand(1, 3, 13, 18))
    assert out.shape == (1, 3, 39, 54) and bool(out.isfinite().all())


def test_official_preset_sizes_match_the_paper() -> None:
    """866K (HiT-SRF) and 792K (HiT-SIR) parameters at x4, as in the authors' README."""
    n = {name: sum(p.numel() for p in create_model(name, scale=4).parameters())
         for name in ("hitsr_srf", "hitsr_sir")}
    assert n == {"hitsr_srf": 866_420, "hitsr_sir": 791_540}
    cfg = create_model("hitsr_srf", scale=4).config
    assert cfg.window_sizes == (4, 8, 16, 32, 48, 64)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_reflect_index_is_repeated_reflect_padding(n: int) -> None:
    """Periodic reflection equals ``F.pad(mode='reflect')`` applied until long enough
    (the official two-step padding of small maps) and is defined for n = 1."""
    x = torch.arange(float(n)).view(1, 1, n)
    for length in (n, n + 1, 3 * n + 4, 40):
        got = x[..., reflect_index(torch.tensor(n), torch.tensor(length))]
        if n == 1:
            assert torch.equal(got, torch.zeros(1, 1, length))
            continue
        ref = x
        while ref.shape[-1] < length:
            ref = F.pad(ref, (0, min(length - ref.shape[-1], ref.shape[-1] - 1)), mode="reflect")
        assert torch.equal(got, ref)


def _scc_reference(m: SpatialChannelCorrelation, x: Tensor) -> Tensor:
    """SCC by the paper's formulas, one window ``(1, ws, ws, C)`` at a time, with loops
    for the cell pooling and the cell-averaged position bias."""
    _, ws, _, C = x.shape
    b, c, nh, d = m.base, m.cell, m.num_heads, m.head_dim
    f = m.qv(x.permute(0, 3, 1, 2))[0].permute(1, 2, 0).reshape(ws * ws, C)  # L, C
    q, v = f[:, : C // 2], f[:, C // 2 :]
    w, bias = m.spatial_linear.weight[0], m.spatial_linear.bias[0]
    L = ws * ws
    cells = torch.zeros(b * b, C // 2)
    for k in range(b * b):
        ky, kx = divmod(k, b)
        for p in range(c * c):
            py, px = ky * c + p // c, kx * c + p % c
            cells[k] += w[p] * v[py * ws + px]
        cells[k] += bias
    pos = torch.zeros(nh, L, b * b)
    for t in range(L):
        ty, tx = divmod(t, ws)
        for k in range(b * b):
            ky, kx = divmod(k, b)
            offs = torch.tensor([[float(ty - (ky * c + i)), float(tx - (kx * c + j))]
                                 for i in range(c) for j in range(c)])
            pos[:, t, k] = m.pos(offs).mean(0)
    xs = torch.zeros(L, C // 2)
    for h in range(nh):
        sl = slice(h * d, (h + 1) * d)
        corr = q[:, sl] @ cells[:, sl].T / d + pos[h]  # L, b*b (no softmax)
        xs[:, sl] = corr @ cells[:, sl]
    xc = v @ ((q.T @ v) / L).T  # L, C/2: ((q^T v) / L) v^T, transposed
    return m.proj(torch.cat([xs, xc], -1)).view(1, ws, ws, C)


@pytest.mark.parametrize(("ws", "base"), [(4, 2), (2, 4), (6, 3)])
def test_scc_matches_hand_computation(ws: int, base: int) -> None:
    torch.manual_seed(0)
    m = SpatialChannelCorrelation(16, base_window=base, window_size=ws, num_heads=2)
    for p in m.parameters():  # LayerNorms and biases away from their defaults
        p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, ws, ws, 16)  # one window each (the DFE's 3x3 conv sees the map)
    with torch.no_grad():
        got = m(x)
        ref = torch.cat([_scc_reference(m, x[:1]), _scc_reference(m, x[1:])])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_scc_pads_by_reflection_and_crops() -> None:
    """A map that is not a window multiple runs as its reflect-padded copy, cropped."""
    torch.manual_seed(0)
    m = SpatialChannelCorrelation(16, base_window=4, window_size=8, num_heads=2)
    x = torch.randn(2, 5, 11, 16)
    padded = F.pad(x.permute(0, 3, 1, 2), (0, 5, 0, 3), mode="reflect").permute(0, 2, 3, 1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(padded)[:, :5, :11], rtol=0, atol=1e-6)


def test_query_map_is_a_distribution_inside_the_query_window() -> None:
    torch.manual_seed(0)
    m = SpatialChannelCorrelation(16, base_window=2, window_size=4, num_heads=2)
    x = torch.randn(2, 8, 12, 16)
    qmap = m.query_map(x, 5, 9)  # row 5, column 9 -> window rows 4..7, columns 8..11
    assert qmap.shape == (2, 1, 8, 12)
    torch.testing.assert_close(qmap.sum(dim=(1, 2, 3)), torch.ones(2))
    outside = qmap.clone()
    outside[..., 4:8, 8:12] = 0
    assert float(outside.abs().max()) == 0.0
    # padding (10x13 -> 12x16) is folded back: still a distribution over the real map
    qmap = m.query_map(torch.randn(1, 10, 13, 16), 9, 12)
    assert qmap.shape == (1, 1, 10, 13)
    torch.testing.assert_close(qmap.sum(), torch.tensor(1.0))


def test_explain_records_every_block() -> None:
    torch.manual_seed(0)
    cfg = {"embed_dim": 16, "depths": (2,), "num_heads": (2,), "base_win_size": 2,
           "hier_win_ratios": (1.0, 2.0)}
    desc = describe(create_model("hitsr_srf", scale=2, **cfg))
    with torch.no_grad(), AttentionRecorder(desc, query=(3, 2)) as rec:
        desc.run(torch.rand(1, 3, 9, 7))
    assert list(rec.maps) == [f"layers.0.residual_group.blocks.{j}.correlation"
                              for j in range(2)]
    for cap in rec.maps.values():
        assert cap.kind == "query" and cap.tensor.shape == (1, 1, 9, 7)
        assert cap.info["query"] == (3, 2)


def test_traits_declare_any_size_and_approximate_tiling() -> None:
    t = create_model("hitsr_srf", scale=4).traits()
    assert (t.multiple_of, t.min_size, t.has_global_ops, t.receptive_field) == (1, 1, True, 64)
    assert not t.export_static_reason
