"""``attnsr.upscale`` / ``Upscaler``: input kinds in = out, fidelity (alpha, 16-bit,
gray, palette, ICC, EXIF), precision fallback, model resolution, auto tiling.

The bicubic model keeps these fast and gives exact expectations."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from torch import Tensor, nn

import attnsr
from attnsr.data.io import read_image
from attnsr.data.resize import imresize
from attnsr.descriptor import describe
from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.inference.upscale import Upscaler
from attnsr.models import list_models
from attnsr.models.base import ModelTraits, SRModel
from attnsr.resolver import choose_precision, resolve


def bicubic_float(x: np.ndarray, s: int) -> np.ndarray:
    """Float MATLAB bicubic of float (H, W, C) in [0, 1], clamped (the reference)."""
    return np.clip(imresize(x.astype(np.float64), s), 0.0, 1.0)


@pytest.fixture(scope="module")
def up2() -> Upscaler:
    return Upscaler("bicubic", scale=2, tile=16, overlap=8, device="cpu")


def rng_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, c)) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- kinds
def test_numpy_uint8_rgb(up2: Upscaler) -> None:
    x = rng_image(20, 28, 3)
    y = up2(x)
    assert y.dtype == np.uint8 and y.shape == (40, 56, 3)
    ref = np.round(bicubic_float(x / 255.0, 2) * 255)
    assert np.abs(y.astype(int) - ref).max() <= 1


def test_numpy_gray_2d_stays_gray(up2: Upscaler) -> None:
    x = rng_image(20, 28, 1)[..., 0]
    y = up2(x)
    assert y.shape == (40, 56) and y.dtype == np.uint8
    ref = np.round(bicubic_float(x[..., None] / 255.0, 2)[..., 0] * 255)
    assert np.abs(y.astype(int) - ref).max() <= 1


def test_numpy_uint16_keeps_16_bit_precision(up2: Upscaler) -> None:
    x = (np.random.default_rng(1).random((16, 18, 3)) * 65535).astype(np.uint16)
    y = up2(x)
    assert y.dtype == np.uint16 and y.shape == (32, 36, 3)
    ref = np.round(bicubic_float(x / 65535.0, 2) * 65535)
    assert np.abs(y.astype(np.int64) - ref).max() <= 2
    assert np.any(y % 257 != 0)  # not 8-bit values scaled up


def test_numpy_float_and_rgba(up2: Upscaler) -> None:
    x = np.random.default_rng(2).random((12, 14, 4)).astype(np.float32)
    y = up2(x)
    assert y.dtype == np.float32 and y.shape == (24, 28, 4)
    assert np.abs(y - bicubic_float(x, 2)).max() < 1e-5  # alpha by the (bicubic) model


def test_tensor_chw_and_batch(up2: Upscaler) -> None:
    t = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    y = up2(t)
    assert y.shape == (2, 3, 20, 24) and y.dtype == torch.float64
    single = up2(t[1])
    assert single.shape == (3, 20, 24)
    assert torch.allclose(y[1], single)
    ref = bicubic_float(t[1].permute(1, 2, 0).numpy(), 2)
    assert np.abs(single.permute(1, 2, 0).numpy() - ref).max() < 1e-5


@pytest.mark.parametrize(("mode", "out_mode"), [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "L"),
                                                ("LA", "LA"), ("1", "L"), ("I;16", "I;16")])
def test_pil_modes(up2: Upscaler, mode: str, out_mode: str) -> None:
    base = Image.fromarray(rng_image(10, 12, 4), "RGBA")
    img = base.convert(mode) if mode != "I;16" else Image.fromarray(
        np.arange(120, dtype=np.uint16).reshape(10, 12) * 500)
    y = up2(img)
    assert isinstance(y, Image.Image) and y.mode == out_mode and y.size == (24, 20)


def test_pil_palette_becomes_rgba_and_keeps_icc(up2: Upscaler) -> None:
    rgba = rng_image(10, 12, 4)
    rgba[..., 3] = np.where(np.arange(12) < 6, 0, 255)[None, :]
    img = Image.fromarray(rgba, "RGBA").convert("P")
    img.info["transparency"] = 0
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img.info["icc_profile"] = icc
    y = up2(img)
    assert y.mode == "RGBA" and y.info["icc_profile"] == icc


def test_unsupported_input_type(up2: Upscaler) -> None:
    with pytest.raises(TypeError, match="cannot upscale"):
        up2([1, 2, 3])


def test_top_level_upscale_function() -> None:
    x = rng_image(8, 8, 3)
    y = attnsr.upscale(x, scale=3, model="bicubic", tile=0, device="cpu")
    assert y.shape == (24, 24, 3)


# --------------------------------------------------------------------------- files
def _save(tmp_path, name: str, img: Image.Image, **kw: object):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("alpha_mode", ["model", "bicubic"])
def test_rgba_file_keeps_opaque_and_transparent_regions(tmp_path, alpha_mode: str) -> None:
    rgba = rng_image(24, 24, 4)
    rgba[..., 3] = 128
    rgba[:, :10, 3] = 0  # transparent band
    rgba[:, 14:, 3] = 255  # opaque band
    src = _save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA"))
    up = Upscaler("bicubic", scale=2, tile=0, device="cpu", alpha_mode=alpha_mode)
    dst = up.upscale_file(src, tmp_path / "a_x2.png")
    out = read_image(dst)
    assert out.alpha is not None and out.pixels.shape == (48, 48, 3)
    assert np.all(out.alpha[:, :16] == 0)  # 2 LR pixels away from the band edge
    assert np.all(out.alpha[:, 32:] == 1)


def test_la_file_stays_gray_with_alpha(tmp_path) -> None:
    la = rng_image(12, 12, 2)
    src = _save(tmp_path, "g.png", Image.fromarray(la, "LA"))
    dst = Upscaler("bicubic", scale=2, tile=0, device="cpu").upscale_file(src, tmp_path / "o.png")
    with Image.open(dst) as im:
        assert im.mode == "LA" and im.size == (24, 24)


def test_16bit_png_round_trip(tmp_path) -> None:
    x = (np.random.default_rng(3).random((12, 10)) * 65535).astype(np.uint16)
    src = _save(tmp_path, "d.png", Image.fromarray(x))
    up = Upscaler("bicubic", scale=2, tile=8, overlap=8, device="cpu")
    out = read_image(up.upscale_file(src, tmp_path / "d_x2.png"))
    assert out.bit_depth == 16 and out.is_grayscale
    ref = bicubic_float(x[..., None] / 65535.0, 2)
    assert np.abs(out.pixels - ref).max() <= 1.5 / 65535


def test_palette_file_becomes_rgb(tmp_path) -> None:
    img = Image.fromarray(rng_image(10, 10, 3)).convert("P", palette=Image.Palette.ADAPTIVE)
    src = _save(tmp_path, "p.png", img)
    dst = Upscaler("bicubic", scale=2, tile=0, device="cpu").upscale_file(src, tmp_path / "o.png")
    with Image.open(dst) as im:
        assert im.mode == "RGB" and im.size == (20, 20)


def test_exif_orientation_applied_and_reset_icc_kept(tmp_path) -> None:
    img = Image.fromarray(rng_image(10, 16, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    exif[0x010F] = "attnsr-test"  # Make: must survive
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = _save(tmp_path, "e.jpg", img, exif=exif.tobytes(), icc_profile=icc, quality=95)
    up = Upscaler("bicubic", scale=2, tile=0, device="cpu")
    dst = up.upscale_file(src, tmp_path / "e_x2.jpg", quality=90)
    with Image.open(dst) as im:
        assert im.size == (20, 32)  # displayed (rotated) size, upscaled
        assert im.getexif().get(0x0112, 1) == 1
        assert im.getexif().get(0x010F) == "attnsr-test"
        assert im.info.get("icc_profile") == icc


def test_jpeg_quality_option(tmp_path) -> None:
    src = _save(tmp_path, "q.png", Image.fromarray(rng_image(32, 32, 3)))
    up = Upscaler("bicubic", scale=2, tile=0, device="cpu")
    lo = up.upscale_file(src, tmp_path / "lo.jpg", quality=30).stat().st_size
    hi = up.upscale_file(src, tmp_path / "hi.jpg", quality=95).stat().st_size
    assert lo < hi


def test_path_input_returns_pil(tmp_path) -> None:
    src = _save(tmp_path, "r.png", Image.fromarray(rng_image(8, 9, 3)))
    y = attnsr.upscale(src, model="bicubic", scale=2, tile=0, device="cpu")
    assert isinstance(y, Image.Image) and y.size == (18, 16)


# --------------------------------------------------------------------------- tiling
def test_auto_tile_under_small_budget_tiles_and_matches(up2: Upscaler) -> None:
    up = Upscaler("bicubic", scale=2, tile="auto", device="cpu", budget=400_000)
    x = rng_image(90, 70, 3)
    assert 0 < up.tile_size(90, 70) < 90  # the budget forces tiling
    whole = Upscaler("bicubic", scale=2, tile=0, device="cpu")(x)
    assert np.abs(up(x).astype(int) - whole.astype(int)).max() <= 1


# --------------------------------------------------------------------------- precision
@dataclass(frozen=True, kw_only=True)
class FakeConfig:
    scale: int = 2
    in_channels: int = 3
    failure: str = "nan"


class LowPrecisionFails(SRModel):
    """Nearest-neighbour x2 that breaks under autocast: NaN or all black."""

    def __init__(self, config: FakeConfig) -> None:
        super().__init__()
        self.config = config
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, lr: Tensor) -> Tensor:
        sr = lr.repeat_interleave(2, -1).repeat_interleave(2, -2) * self.w
        if torch.is_autocast_enabled(lr.device.type):
            return sr * float("nan") if self.config.failure == "nan" else sr * 0
        return sr

    def traits(self) -> ModelTraits:
        return ModelTraits(bf16_safe=True, receptive_field=1)


@pytest.mark.parametrize("failure", ["nan", "black"])
def test_low_precision_failure_recomputed_in_fp32(failure: str, caplog) -> None:
    d = describe(LowPrecisionFails(FakeConfig(failure=failure)), name="fake")
    up = Upscaler(d, tile=8, overlap=4, device="cpu", precision="bf16")
    assert up.precision == "bf16"
    x = rng_image(12, 12, 3) | 1  # not black
    with caplog.at_level(logging.WARNING):
        y = up(x)
    assert np.array_equal(y, x.repeat(2, 0).repeat(2, 1))
    assert up.runner.fallbacks == 4  # every tile
    assert any("recomputed it in fp32" in r.message for r in caplog.records)


def test_black_input_is_not_a_failure() -> None:
    d = describe(LowPrecisionFails(FakeConfig(failure="black")), name="fake")
    up = Upscaler(d, tile=0, device="cpu", precision="bf16")
    up(np.zeros((8, 8, 3), np.uint8))
    assert up.runner.fallbacks == 0


def test_resolve_precision_rules(caplog) -> None:
    d = describe(LowPrecisionFails(FakeConfig()))  # bf16-safe, not fp16-safe
    cpu = torch.device("cpu")
    assert choose_precision("auto", cpu, d) == "fp32"
    with caplog.at_level(logging.WARNING):
        assert choose_precision("fp16", cpu, d) == "bf16"
    assert "not fp16-safe" in caplog.text
    assert "emulated and about 3x slower" in caplog.text  # bf16 on the CPU: said so
    with pytest.raises(ConfigError):
        choose_precision("fp8", cpu, d)


# --------------------------------------------------------------------------- models
def test_scale_mismatch_is_an_error() -> None:
    d = describe(LowPrecisionFails(FakeConfig(scale=2)))
    with pytest.raises(ConfigError, match="x2"):
        Upscaler(d, scale=4, device="cpu")


def test_no_default_model_gives_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match="no bundled model for x8; models with "
                       "weights: .*attnsr_lite.x4"):
        Upscaler(None, scale=8, device="cpu")


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Upscaler("bicubic", scale=2, alpha_mode="nearest")
    with pytest.raises(ConfigError):
        Upscaler("bicubic", scale=2, tile="big")


# --------------------------------------------------------------------------- memory order
@pytest.mark.parametrize("name", list_models())
def test_cpu_runner_uses_nhwc_with_the_same_output(name: str) -> None:
    # CPU inference runs the zoo in NHWC (oneDNN's fast path): the runner converts weights
    # and input, the result equals the NCHW forward to float rounding and comes back in
    # ordinary (contiguous) order.
    from attnsr.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, scale=2).eval()
    desc = describe(model, name=name)
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        expected = desc.run(x).clamp(0, 1)  # NCHW weights and input
    runner = resolve(desc, device="cpu")
    assert model.traits().channels_last
    conv = next((p for p in model.parameters() if p.dim() == 4), None)
    assert conv is None or conv.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = runner(x)
    assert got.is_contiguous() and got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)


def test_auto_tile_never_goes_below_the_exact_size() -> None:
    """A tiny budget still gets tiles at which tiled output equals the whole image."""
    up = Upscaler("attnsr-x2", tile="auto", device="cpu", backend="torch", budget=1)
    least = up.min_exact_tile()
    assert up.tile_size(4 * least, 4 * least) == least
    assert up.tile_size(least - 1, least - 1) == 0  # smaller than one tile: whole image
