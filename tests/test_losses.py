"""Training losses: RGB and weighted YCbCr."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnsr.errors import ConfigError
from attnsr.metrics import y_channel
from attnsr.train.config import LossConfig, load_config
from attnsr.train.losses import make_loss


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 8, 9, generator=gen), torch.rand(2, 3, 8, 9, generator=gen)


def test_ycbcr_with_no_chroma_is_the_loss_on_the_papers_y() -> None:
    sr, hr = _pair()
    loss = make_loss(LossConfig(name="l1", space="ycbcr", chroma_weight=0.0))(sr, hr)
    ys = [np.stack([y_channel(t.permute(1, 2, 0).double().numpy() * 255.0) for t in x])
          for x in (sr, hr)]
    assert float(loss) == pytest.approx(float(np.abs(ys[0] - ys[1]).mean() / 255.0), rel=1e-5)


def test_ycbcr_matrix_has_neutral_chroma_for_grey() -> None:
    from attnsr.train.losses import YCBCR

    white = YCBCR @ torch.ones(3)  # Y spans 219 of 255 levels, Cb = Cr = 0 for grey
    assert torch.allclose(white, torch.tensor([219 / 255, 0.0, 0.0]), atol=1e-6)


def test_ycbcr_weights_the_chroma_planes() -> None:
    sr, hr = _pair()
    full = make_loss(LossConfig(name="mse", space="ycbcr", chroma_weight=1.0))(sr, hr)
    y = make_loss(LossConfig(name="mse", space="ycbcr", chroma_weight=0.0))(sr, hr)
    half = make_loss(LossConfig(name="mse", space="ycbcr", chroma_weight=0.5))(sr, hr)
    chroma = (3 * full - y) / 2  # full = (Y + 2 C) / 3
    assert float(half) == pytest.approx(float((y + chroma) / 2), rel=1e-6)
    # 1-channel images: the plain loss; RGB space: the plain loss
    g = make_loss(LossConfig(name="l1", space="ycbcr"))(sr[:, :1], hr[:, :1])
    assert float(g) == pytest.approx(float((sr[:, :1] - hr[:, :1]).abs().mean()))
    assert float(make_loss(LossConfig())(sr, hr)) == pytest.approx(float((sr - hr).abs().mean()))


def test_negative_chroma_weight_is_a_config_error() -> None:
    base = {"model": {"name": "attnsr_lite"}, "data": {"sources": [{"hr_dir": "x"}]}}
    with pytest.raises(ConfigError, match="loss.chroma_weight"):
        load_config(base=base, overrides=["loss.chroma_weight=-1"])
