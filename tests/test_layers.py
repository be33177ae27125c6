"""Attention blocks and upsamplers, each tested alone on tiny tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnsr.errors import ConfigError
from attnsr.layers import (
    CBAM,
    ESA,
    ChannelAttention,
    ContrastChannelAttention,
    PixelAttention,
    SpatialAttention,
    Upsample,
    UpsampleOneStep,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_channel_attention_weights_in_open_unit_interval_and_scale_x() -> None:
    ca = ChannelAttention(channels=32, reduction=16)
    x = torch.randn(2, 32, 9, 11)
    w = ca.weights(x)
    assert w.shape == (2, 32, 1, 1)
    assert bool((w > 0).all()) and bool((w < 1).all())
    torch.testing.assert_close(ca(x), x * w)


def test_channel_attention_official_layout() -> None:
    ca = ChannelAttention(channels=64, reduction=16)
    shapes = {k: tuple(v.shape) for k, v in ca.state_dict().items()}
    assert shapes == {
        "conv_du.0.weight": (4, 64, 1, 1),
        "conv_du.0.bias": (4,),
        "conv_du.2.weight": (64, 4, 1, 1),
        "conv_du.2.bias": (64,),
    }


def test_channel_attention_is_global_mean_gate() -> None:
    ca = ChannelAttention(channels=8, reduction=4)
    x = torch.randn(1, 8, 5, 7)
    ref = torch.sigmoid(ca.conv_du[2](F.relu(ca.conv_du[0](F.adaptive_avg_pool2d(x, 1)))))
    torch.testing.assert_close(ca.weights(x), ref)


def test_contrast_channel_attention_uses_std_plus_mean() -> None:
    cca = ContrastChannelAttention(channels=16, reduction=16)
    x = torch.randn(2, 16, 6, 5)
    stat = x.std(dim=(2, 3), unbiased=False, keepdim=True) + x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(cca.descriptor(x), stat)
    w = cca.weights(x)
    assert bool((w > 0).all()) and bool((w < 1).all())
    torch.testing.assert_close(cca(x), x * cca.conv_du(stat))


def test_spatial_attention_map_shape_and_range() -> None:
    sa = SpatialAttention(kernel_size=7)
    x = torch.randn(2, 6, 13, 9)
    m = sa.weights(x)
    assert m.shape == (2, 1, 13, 9)
    assert bool((m > 0).all()) and bool((m < 1).all())
    pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1)
    ref = x * torch.sigmoid(F.conv2d(pooled, sa.conv.weight, padding=3))
    torch.testing.assert_close(sa(x), ref)


def test_cbam_is_spatial_after_channel() -> None:
    cbam = CBAM(channels=16, reduction=4)
    x = torch.randn(1, 16, 7, 10)
    out = cbam(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, cbam.spatial(cbam.channel(x)))


def test_pixel_attention_is_x_times_sigmoid_conv1x1() -> None:
    pa = PixelAttention(channels=12)
    x = torch.randn(2, 12, 5, 6)
    ref = x * torch.sigmoid(F.conv2d(x, pa.conv.weight, pa.conv.bias))
    torch.testing.assert_close(pa(x), ref, rtol=0, atol=0)
    assert pa.weights(x).shape == x.shape


@pytest.mark.parametrize("size", [(15, 15), (17, 23), (31, 29)])
def test_esa_keeps_shape_on_odd_sizes(size: tuple[int, int]) -> None:
    esa = ESA(channels=10, esa_channels=4)
    x = torch.randn(1, 10, *size)
    assert esa(x).shape == x.shape
    w = esa.weights(x)
    assert bool((w > 0).all()) and bool((w < 1).all())


def test_esa_official_keys() -> None:
    keys = {k.split(".")[0] for k in ESA(channels=8).state_dict()}
    assert keys == {"conv1", "conv_f", "conv2", "conv3", "conv4"}


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_upsample_shapes_and_layout(scale: int) -> None:
    up = Upsample(scale=scale, channels=8)
    x = torch.randn(1, 8, 5, 7)
    assert up(x).shape == (1, 8, 5 * scale, 7 * scale)
    n_convs = {2: 1, 3: 1, 4: 2, 8: 3}[scale]
    conv_keys = sorted(k for k in up.state_dict() if k.endswith("weight"))
    assert conv_keys == [f"{2 * i}.weight" for i in range(n_convs)]
    assert up.state_dict()["0.weight"].shape[0] == (9 if scale == 3 else 4) * 8


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_upsample_one_step_shapes(scale: int) -> None:
    up = UpsampleOneStep(scale=scale, in_channels=8, out_channels=3)
    assert up(torch.randn(2, 8, 3, 5)).shape == (2, 3, 3 * scale, 5 * scale)
    assert up.state_dict()["0.weight"].shape == (3 * scale * scale, 8, 3, 3)


def test_upsample_rejects_unsupported_scale() -> None:
    with pytest.raises(ConfigError, match="scale 5"):
        Upsample(scale=5, channels=4)


def test_contextual_gate_inference_paths_equal_the_training_path() -> None:
    """Inference in NHWC runs the gate as one fused oneDNN linear + sigmoid (where the
    build has it), and the bilinear skip of attnsr_net as an LR-space conv: both give the
    training path's values."""
    from attnsr.layers.contextual import _LINEAR_POINTWISE, ContextualPixelAttention
    from attnsr.models.attnsr_net import _few_channel_conv, bilinear_kernel
    from attnsr.models.registry import create_model

    torch.manual_seed(0)
    cpa = ContextualPixelAttention(channels=16).eval()
    x = torch.rand(2, 16, 19, 23)
    ref = cpa(x)  # grad enabled: the plain path
    nhwc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        if _LINEAR_POINTWISE is not None:
            assert cpa._fused_gate(cpa.context(nhwc)) is not None
        got = cpa(nhwc.clone())
        plain = cpa(x.clone())  # NCHW: the conv path
    assert torch.allclose(got, ref, rtol=0, atol=1e-6)
    assert torch.allclose(plain, ref, rtol=0, atol=1e-6)
    for s in (2, 3, 4):
        lr = torch.rand(1, 3, 9, 11)
        base = F.pixel_shuffle(F.conv2d(F.pad(lr, (1, 1, 1, 1), mode="replicate"),
                                        bilinear_kernel(s, 3)), s)
        want = F.interpolate(lr, scale_factor=s, mode="bilinear", align_corners=False)
        assert torch.allclose(base, want, rtol=0, atol=1e-6)
    # the 3-channel convs (head, bilinear skip) through oneDNN: the plain conv's values
    x3 = torch.rand(1, 3, 17, 13).contiguous(memory_format=torch.channels_last)
    w3, b3 = torch.rand(8, 3, 3, 3), torch.rand(8)
    with torch.no_grad():
        for pad, bias in ((1, b3), (0, None)):
            assert torch.allclose(_few_channel_conv(x3, w3, bias, padding=pad),
                                  F.conv2d(x3, w3, bias, padding=pad), rtol=1e-6, atol=1e-6)
    net = create_model("attnsr_lite", scale=3, channels=8, n_blocks=2).eval()
    lr = torch.rand(1, 3, 10, 12)
    train_out = net(lr)
    with torch.no_grad():
        infer = net(lr.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(infer, train_out, rtol=0, atol=1e-5)
