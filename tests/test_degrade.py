"""Real-world degradation: kernels, operators and the pipeline checked against their
definitions; evaluation presets; the training wiring; the blockiness measure."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from attnsr.data import degrade as dg
from attnsr.data.resize import imresize
from attnsr.errors import ConfigError
from attnsr.metrics import blockiness, calc_psnr
from attnsr.train.config import load_config
from attnsr.train.data import PatchBatches, TrainImage
from train_fixtures import one_thread  # noqa: F401

ISO_KERNELS = {
    "gaussian": lambda: dg.gaussian_kernel(15, 2.0),
    "generalized_iso": lambda: dg.generalized_gaussian_kernel(15, 2.0, beta=0.7),
    "plateau_iso": lambda: dg.plateau_kernel(15, 2.0, beta=1.5),
    "sinc": lambda: dg.sinc_kernel(15, 1.2),
}
ANISO_KERNELS = {
    "aniso": lambda: dg.gaussian_kernel(15, 3.0, 1.0, 0.6),
    "generalized_aniso": lambda: dg.generalized_gaussian_kernel(15, 3.0, 1.0, -1.1, beta=2.5),
    "plateau_aniso": lambda: dg.plateau_kernel(15, 2.5, 0.8, 2.0, beta=1.2),
}
ALL_KERNELS = {**ISO_KERNELS, **ANISO_KERNELS}


def _image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 ``(h, w, 3)``: a smooth colour gradient plus random texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    grad = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)
    return np.rint((0.7 * grad + 0.3 * rng.random((h, w, 3))) * 255).astype(np.uint8)


def _smooth_texture(size: int = 256, sigma: float = 2.0, seed: int = 0) -> np.ndarray:
    """uint8 ``(size, size, 3)`` stationary texture: Gaussian-blurred white noise."""
    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    tex = dg.blur(noise, dg.gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma))
    tex = (tex - tex.mean()) / tex.std() * 0.15 + 0.5
    return np.clip(np.rint(tex * 255), 0, 255).astype(np.uint8)


def _photo(size: int = 128) -> np.ndarray:
    """uint8 ``(size, size, 3)``: a crop of matplotlib's sample photograph."""
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[100:100 + size, 150:150 + size])


def _plain() -> dg.StageConfig:
    """A stage that does nothing: every probability 0, resize 'keep'."""
    return dg.StageConfig(blur=dg.BlurConfig(prob=0.0), resize=dg.ResizeConfig(probs=(0, 0, 1)),
                          noise=dg.NoiseConfig(prob=0.0), jpeg=dg.JpegConfig(prob=0.0))


# ---------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("name", sorted(ALL_KERNELS))
def test_kernels_sum_to_one_and_are_point_symmetric(name: str) -> None:
    k = ALL_KERNELS[name]()
    assert k.shape == (15, 15) and k.dtype == np.float32
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-6
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-8)  # 180-degree rotation


@pytest.mark.parametrize("name", sorted(ISO_KERNELS))
def test_isotropic_kernels_are_rotation_invariant(name: str) -> None:
    k = ISO_KERNELS[name]()
    np.testing.assert_allclose(k, k.T, atol=1e-8)
    np.testing.assert_allclose(k, np.rot90(k), atol=1e-8)


@pytest.mark.parametrize("name", sorted(ANISO_KERNELS))
def test_anisotropic_kernels_are_not_rotation_invariant(name: str) -> None:
    k = ANISO_KERNELS[name]()
    assert np.abs(k - k.T).max() > 1e-3


def test_anisotropic_gaussian_has_the_given_covariance() -> None:
    sx, sy, theta = 3.0, 1.5, 0.6
    k = dg.gaussian_kernel(41, sx, sy, theta).astype(np.float64)  # +-20 px: > 6 sigma
    y, x = np.mgrid[-20:21, -20:21]  # rows: y, columns: x
    moments = np.array([[(k * x * x).sum(), (k * x * y).sum()],
                        [(k * x * y).sum(), (k * y * y).sum()]])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = rot @ np.diag([sx**2, sy**2]) @ rot.T
    np.testing.assert_allclose(moments, expected, rtol=1e-4, atol=1e-4)
    assert abs((k * x).sum()) < 1e-6 and abs((k * y).sum()) < 1e-6  # centred


def test_generalized_gaussian_with_beta_one_is_the_gaussian() -> None:
    np.testing.assert_allclose(dg.generalized_gaussian_kernel(13, 2.5, 1.2, 0.4, beta=1.0),
                               dg.gaussian_kernel(13, 2.5, 1.2, 0.4), rtol=1e-6, atol=1e-9)


def test_plateau_is_flatter_near_the_centre_than_the_gaussian() -> None:
    # 1 / (1 + q^beta) with beta = 2 is flat at q = 0; a Gaussian falls linearly in q.
    p = dg.plateau_kernel(21, 3.0, beta=2.0)
    g = dg.gaussian_kernel(21, 3.0)
    assert p[10, 11] / p[10, 10] > g[10, 11] / g[10, 10]


def test_bessel_j1_matches_known_values() -> None:
    x = np.array([0.0, 1.0, 2.0, 10.0, 3.8317059702075125, -1.0])
    expected = np.array([0.0, 0.44005058574493355, 0.5767248077568734, 0.04347274616886144,
                         0.0, -0.44005058574493355])
    np.testing.assert_allclose(dg.bessel_j1(x), expected, rtol=0, atol=1e-10)


def test_sinc_kernel_passes_low_and_stops_high_frequencies() -> None:
    cutoff = math.pi / 2
    k = dg.sinc_kernel(21, cutoff)

    def gain(omega: float) -> float:
        """Measured by convolution: cos(omega x) comes out as H(omega) cos(omega x)."""
        cos = np.cos(omega * np.arange(96, dtype=np.float64))[None, :, None]
        img = np.repeat(np.broadcast_to(cos, (40, 96, 1)), 3, axis=2).astype(np.float32)
        out = dg.blur(img, k)[12:-12, 12:-12]  # away from the padded borders
        inner = img[12:-12, 12:-12]
        h = float((out * inner).sum() / (inner * inner).sum())
        np.testing.assert_allclose(out, h * inner, atol=1e-5)  # a pure gain, no phase
        return h

    assert abs(gain(0.0) - 1.0) < 1e-5
    for f in (0.1, 0.3, 0.5):
        assert 0.85 < gain(f * cutoff) < 1.15
    for f in (1.5, 1.8, 2.0):
        assert abs(gain(f * cutoff)) < 0.08


@pytest.mark.parametrize("call", [
    lambda: dg.gaussian_kernel(8, 1.0),  # even size
    lambda: dg.gaussian_kernel(0, 1.0),
    lambda: dg.gaussian_kernel(7, 0.0),
    lambda: dg.gaussian_kernel(7, 1.0, -1.0),
    lambda: dg.plateau_kernel(6, 1.0),
    lambda: dg.generalized_gaussian_kernel(7, -2.0),
    lambda: dg.sinc_kernel(7, 0.0),
    lambda: dg.sinc_kernel(7, 3.5),  # above pi
    lambda: dg.sinc_kernel(10, 1.0),
])
def test_bad_kernel_arguments_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------- operators


def test_blur_with_a_delta_is_the_identity() -> None:
    img = _image(20, 24).astype(np.float32) / 255
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1.0
    np.testing.assert_array_equal(dg.blur(img, delta), img)


def test_blur_is_a_true_convolution_with_reflect_padding() -> None:
    rng = np.random.default_rng(3)
    img = rng.random((9, 11, 3)).astype(np.float32)
    k = rng.random((5, 5)).astype(np.float32)  # asymmetric: tells convolution from correlation
    pad = np.pad(img.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    ref = np.zeros(img.shape)
    for i in range(9):
        for j in range(11):
            for a in range(5):
                for b in range(5):  # out[i, j] = sum k[a, b] img[i - (a - 2), j - (b - 2)]
                    ref[i, j] += k[a, b] * pad[i + 4 - a, j + 4 - b]
    np.testing.assert_allclose(dg.blur(img, k), ref, rtol=1e-5, atol=1e-5)


def test_gaussian_noise_has_the_given_statistics() -> None:
    img = np.full((256, 256, 3), 0.5, np.float32)
    sigma = 0.05
    noise = dg.gaussian_noise(img, sigma, np.random.default_rng(0)) - img
    n = noise.size
    assert abs(noise.mean()) < 5 * sigma / math.sqrt(n)
    assert abs(noise.std() / sigma - 1) < 0.01  # ~0.16 % standard error
    assert abs(np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]) < 0.02
    gray = dg.gaussian_noise(img, sigma, np.random.default_rng(0), gray=True) - img
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    assert abs(gray.std() / sigma - 1) < 0.02


@pytest.mark.parametrize(("x", "scale", "peak"), [(0.3, 2.0, 255.0), (0.8, 0.5, 255.0),
                                                  (0.1, 1.0, 100.0)])
def test_poisson_noise_variance_is_scale_squared_x_over_peak(x: float, scale: float,
                                                             peak: float) -> None:
    img = np.full((256, 256, 3), x, np.float32)
    noise = (dg.poisson_noise(img, scale, np.random.default_rng(1), peak=peak) - img)
    noise = noise.astype(np.float64)
    var = scale**2 * x / peak
    assert abs(noise.mean()) < 5 * math.sqrt(var / noise.size)
    assert abs(noise.var() / var - 1) < 0.03  # ~0.3 % standard error


def test_gray_poisson_noise_is_one_plane_from_the_luma() -> None:
    colour = np.array([0.2, 0.5, 0.8], np.float32)
    img = np.broadcast_to(colour, (256, 256, 3)).copy()
    noise = (dg.poisson_noise(img, 1.5, np.random.default_rng(2), gray=True) - img)
    noise = noise.astype(np.float64)
    # One plane added to channels of different values: equal up to float32 rounding.
    np.testing.assert_allclose(noise[..., 0], noise[..., 1], atol=1e-6)
    np.testing.assert_allclose(noise[..., 0], noise[..., 2], atol=1e-6)
    luma = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.8
    assert abs(noise[..., 0].var() / (1.5**2 * luma / 255) - 1) < 0.03


def test_jpeg_is_pillows_round_trip() -> None:
    img = _image(48, 40, seed=5).astype(np.float32) / 255 + 0.0013  # not on the uint8 grid
    for q in (15, 75):
        u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=q)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            expected = np.asarray(im.convert("RGB"), np.float32) / 255
        out = dg.jpeg(img, q)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)


def test_lower_jpeg_quality_gives_larger_error() -> None:
    img = _photo(128).astype(np.float32) / 255
    errors = [float(np.mean((dg.jpeg(img, q) - img) ** 2)) for q in (95, 60, 30, 10)]
    assert errors == sorted(errors) and errors[-1] > 3 * errors[0]


def test_resize_matlab_is_imresize_and_others_give_the_size() -> None:
    img = _image(64, 48).astype(np.float32) / 255
    np.testing.assert_array_equal(dg.resize(img, (37, 29), "matlab"),
                                  imresize(img, output_size=(37, 29)))
    for mode in ("area", "bilinear", "bicubic"):
        for size in ((37, 29), (80, 51)):
            out = dg.resize(img, size, mode)
            assert out.shape == (*size, 3) and out.dtype == np.float32
    assert dg.resize(img, (64, 48), "bicubic") is img


@pytest.mark.parametrize("mode", ["area", "bilinear"])
def test_halving_without_antialiasing_is_the_2x2_mean(mode: str) -> None:
    # area: by definition; bilinear (align_corners=False): samples fall at 2i + 0.5.
    img = _image(32, 24).astype(np.float32) / 255
    mean = img.reshape(16, 2, 12, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(dg.resize(img, (16, 12), mode), mean, atol=1e-6)


# ---------------------------------------------------------------------------- pipeline


def test_degrade_shape_dtype_and_seeding() -> None:
    hr = _image(64, 48)
    cfg = dg.DegradationConfig(enabled=True, clean_prob=0.0)
    out = dg.degrade(hr, 4, cfg, np.random.default_rng(7))
    assert out.shape == (16, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, dg.degrade(hr, 4, cfg, np.random.default_rng(7)))
    others = [dg.degrade(hr, 4, cfg, np.random.default_rng(s)) for s in (8, 9)]
    assert not any(np.array_equal(out, o) for o in others)
    shuffled = dataclasses.replace(cfg, shuffle=True)
    assert dg.degrade(hr, 2, shuffled, np.random.default_rng(0)).shape == (32, 24, 3)


def test_clean_samples_are_the_matlab_bicubic_lr() -> None:
    hr = _image(64, 48)
    cfg = dg.DegradationConfig(enabled=True, clean_prob=1.0)
    for seed in range(3):
        np.testing.assert_array_equal(dg.degrade(hr, 4, cfg, np.random.default_rng(seed)),
                                      imresize(hr, 0.25))


def test_all_stages_off_with_a_matlab_final_resize_is_the_float_bicubic_lr() -> None:
    # The pipeline works on float images, so its 'matlab' resize is MATLAB's imresize of the
    # double image, rounded once (im2uint8(imresize(im2double(hr), 1/s))). The uint8 LR of the
    # benchmarks (and of clean samples) is rounded after each 1-D pass: at most 1 level apart.
    hr = _image(64, 48, seed=2)
    cfg = dg.DegradationConfig(enabled=True, clean_prob=0.0, first=_plain(), second=_plain(),
                               second_order_prob=0.0, final_modes=["matlab"],
                               final_sinc_prob=0.0, final_jpeg=dg.JpegConfig(prob=0.0))
    expected = np.rint(imresize(hr / 255.0, 0.25) * 255).astype(np.uint8)
    for seed in range(3):
        out = dg.degrade(hr, 4, cfg, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, expected)
        assert np.abs(out.astype(int) - imresize(hr, 0.25)).max() <= 1


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(("change", "key"), [
    ({"clean_prob": 1.5}, "data.degradation.clean_prob"),
    ({"final_jpeg": dg.JpegConfig(prob=-0.1)}, "data.degradation.final_jpeg.prob"),
    ({"first": dg.StageConfig(noise=dg.NoiseConfig(prob=2.0))},
     "data.degradation.first.noise.prob"),
    ({"second": dg.StageConfig(blur=dg.BlurConfig(kinds={"box": 1.0}))},
     "data.degradation.second.blur.kinds"),
    ({"first": dg.StageConfig(resize=dg.ResizeConfig(modes=["nearest"]))},
     "data.degradation.first.resize.modes"),
    ({"final_modes": ["lanczos"]}, "data.degradation.final_modes"),
    ({"first": dg.StageConfig(blur=dg.BlurConfig(kernel_size=(7, 20)))},
     "data.degradation.first.blur.kernel_size"),
    ({"first": dg.StageConfig(resize=dg.ResizeConfig(probs=(0, 0, 0)))},
     "data.degradation.first.resize.probs"),
    ({"second": dg.StageConfig(blur=dg.BlurConfig(sigma=(0.0, 1.0)))},
     "data.degradation.second.blur.sigma"),
    ({"sinc_cutoff": (1.0, 4.0)}, "data.degradation.sinc_cutoff"),
])
def test_check_config_names_the_bad_key(change: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ":"):
        dg.check_config(dataclasses.replace(dg.DegradationConfig(), **change))


def test_default_config_passes_the_check() -> None:
    dg.check_config(dg.DegradationConfig())


@pytest.mark.parametrize(("degradation", "message"), [
    ({"first": {"blur": {"prob": "high"}}},
     "data.degradation.first.blur.prob: expected float, got str 'high'"),
    ({"second": {"jpeg": {"quality": [30]}}},
     "data.degradation.second.jpeg.quality: expected 2 values, got 1"),
    ({"enabled": "yes"}, "data.degradation.enabled: expected bool"),
    ({"first": {"noise": {"sgima": [1, 2]}}}, "data.degradation.first.noise.sgima: unknown key"),
    ({"second_order_prob": 3}, "data.degradation.second_order_prob: a probability in [0, 1]"),
])
def test_training_config_errors_name_the_key_path(degradation: dict, message: str) -> None:
    base = {"model": {"name": "pan"},
            "data": {"sources": [{"hr_dir": "x"}], "degradation": degradation}}
    with pytest.raises(ConfigError) as err:
        load_config(base=base)
    assert message in str(err.value)


def test_training_config_loads_the_degradation() -> None:
    base = {"model": {"name": "pan"},
            "data": {"sources": [{"hr_dir": "x"}],
                     "degradation": {"enabled": True, "first": {"blur": {"sigma": [0.5, 2]}},
                                     "final_modes": ["matlab"]}}}
    deg = load_config(base=base).data.degradation
    assert deg.enabled and deg.first.blur.sigma == (0.5, 2.0) and deg.final_modes == ["matlab"]
    assert deg.second == dg.DegradationConfig().second  # defaults fill the rest


# ---------------------------------------------------------------------------- presets


def test_presets_are_deterministic_per_preset_name_and_scale() -> None:
    hr = _image(48, 48)
    for preset in dg.PRESETS:
        a = dg.degrade_preset(hr, 4, preset, "img1")
        assert a.shape == (12, 12, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, dg.degrade_preset(hr.copy(), 4, preset, "img1"))
        assert not np.array_equal(a, dg.degrade_preset(hr, 4, preset, "img2"))
    seeds = {dg.preset_seed(p, n, s) for p in ("jpeg", "noise") for n in ("a", "b") for s in (2, 4)}
    assert len(seeds) == 8


def test_gray_images_stay_gray() -> None:
    rgb = _image(32, 32)
    gray = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])[..., None].astype(np.uint8)
    for preset in dg.PRESETS:
        out = dg.degrade_preset(gray, 2, preset, "g")
        assert out.shape == (16, 16, 1) and out.dtype == np.uint8
        # Degraded as the replicated RGB image, then its luma.
        col = dg.degrade_preset(np.repeat(gray, 3, axis=2), 2, preset, "g")
        expected = np.rint(col.astype(np.float64) @ [0.299, 0.587, 0.114])
        np.testing.assert_allclose(out[..., 0], expected, atol=1)  # float32 vs 64 luma


def test_unknown_preset_raises() -> None:
    with pytest.raises(ValueError, match="unknown degradation preset 'fog'"):
        dg.degrade_preset(_image(16, 16), 2, "fog", "x")


@pytest.mark.parametrize("preset", sorted(dg.PRESETS))
def test_each_preset_degrades(preset: str) -> None:
    # Bicubic upscaling of the degraded LR is further from the HR than of the clean LR.
    hr, s = _photo(128), 4
    clean = calc_psnr(imresize(imresize(hr, 1 / s), s), hr, crop_border=s)
    lr = dg.degrade_preset(hr, s, preset, "grace")
    assert calc_psnr(imresize(lr, s), hr, crop_border=s) < clean - 0.2
    assert calc_psnr(lr, imresize(hr, 1 / s), crop_border=0) < 40


# ---------------------------------------------------------------------------- training data


def test_patch_batches_with_degradation() -> None:
    sources = [[TrainImage(path=f"m{i}", hr=_image(40, 48, seed=i), lr=None) for i in range(3)]]
    cfg = dg.DegradationConfig(enabled=True, clean_prob=0.0)
    kw = {"scale": 2, "patch_size": 8, "batch_size": 4, "seed": 3}
    ds = PatchBatches(sources, [1.0], degradation=cfg, **kw)
    lr, hr = ds[5]
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    assert lr.dtype == torch.float32 and lr.min() >= 0 and lr.max() <= 1
    again = PatchBatches(sources, [1.0], degradation=cfg, **kw)[5]
    assert torch.equal(again[0], lr) and torch.equal(again[1], hr)
    assert not torch.equal(ds[6][0], lr)
    # The crop and augmentation draws come first: same HR patches, a different LR.
    clean_lr, clean_hr = PatchBatches(sources, [1.0], **kw)[5]
    off_lr, _ = PatchBatches(sources, [1.0], degradation=dg.DegradationConfig(), **kw)[5]
    assert torch.equal(clean_hr, hr) and torch.equal(off_lr, clean_lr)
    assert not torch.equal(clean_lr, lr)


# ---------------------------------------------------------------------------- blockiness


def test_blockiness_of_a_smooth_texture_is_about_one() -> None:
    assert 0.93 < blockiness(_smooth_texture()) < 1.07


def test_blockiness_of_a_strong_jpeg_is_well_above_one() -> None:
    tex = _smooth_texture(seed=1)
    q10 = dg.jpeg(tex.astype(np.float32) / 255, 10)
    q90 = dg.jpeg(tex.astype(np.float32) / 255, 90)
    assert blockiness(q10) > 1.5
    assert blockiness(q10) > blockiness(q90)
    # Off the 8-pixel grid (shifted by 4) the same image has no block edges.
    assert blockiness(q10[4:, 4:]) < 1.1


def test_blockiness_maps_the_grid_through_the_upscale() -> None:
    # LR: 8x8 blocks of constant colour plus faint texture; x4 nearest: 32x32 blocks.
    rng = np.random.default_rng(4)
    blocks = np.kron(rng.random((6, 6, 3)), np.ones((8, 8, 1)))
    lr = np.rint((0.8 * blocks + 0.2 * rng.random((48, 48, 3))) * 255).astype(np.uint8)
    up = np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)  # (192, 192, 3)
    on_grid = blockiness(up, grid_scale=4)
    assert on_grid > 10
    assert blockiness(up, grid_scale=1) < on_grid  # every 8 px: 3 of 4 lines inside blocks
    # One LR pixel off (4 px): the lines fall on texture edges only, a few times lower.
    assert blockiness(up[4:, 4:], grid_scale=4) < on_grid / 3
    # One output pixel off: inside the replicated 4x4 pixels, no gradient at all.
    assert blockiness(up[1:, 1:], grid_scale=4) == 0.0
    assert blockiness(lr) > 2 and blockiness(lr[4:, 4:]) < 1  # the LR itself, grid_scale 1


def test_blockiness_edge_cases() -> None:
    flat = np.full((16, 16, 3), 90, np.uint8)
    assert blockiness(flat) == 1.0
    step = flat.copy()
    step[:, 8:] = 120  # one edge, exactly on the border between columns 7 and 8
    assert blockiness(step) == math.inf
    with pytest.raises(ValueError, match="no block border"):
        blockiness(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        blockiness(flat, block=1)


def test_resize_relative_to_output_follows_real_esrgan_second_order() -> None:
    """``relative_to: output``: the factor applies to the LR size (Real-ESRGAN's second
    resize), not to the size the stage receives; ``input`` scales the current size."""
    from attnsr.data.degrade import ResizeConfig, _random_resize

    img = np.zeros((128, 96, 3), np.float32)
    down = {"probs": (0.0, 1.0, 0.0), "down_range": (0.5, 1.0), "modes": ["area"]}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out = _random_resize(img, ResizeConfig(**down, relative_to="output"), rng, 4, (32, 24))
        assert 16 <= out.shape[0] <= 32 and 12 <= out.shape[1] <= 24
        rng = np.random.default_rng(seed)
        out = _random_resize(img, ResizeConfig(**down), rng, 4, (32, 24))
        assert 64 <= out.shape[0] <= 128 and 48 <= out.shape[1] <= 96
    keep = _random_resize(img, ResizeConfig(probs=(0.0, 0.0, 1.0), relative_to="output"),
                          np.random.default_rng(0), 4, (32, 24))
    assert keep.shape == img.shape


def _camera_cfg(**change: object) -> dg.DegradationConfig:
    """Every sample through the camera path: no blur, MATLAB downscale, no noise or JPEG
    unless ``change`` says so."""
    base = {"enabled": True, "clean_prob": 0.0, "camera_prob": 1.0,
            "first": _plain(), "second": _plain(), "final_modes": ["matlab"],
            "final_sinc_prob": 1.0, "final_jpeg": dg.JpegConfig(prob=0.0)}
    return dg.DegradationConfig(**{**base, **change})  # type: ignore[arg-type]


def test_camera_path_is_downscale_then_noise_then_jpeg_at_the_lr_size() -> None:
    hr = _image(64, 48, seed=3)
    clean = imresize(hr / 255.0, 0.25)
    # nothing drawn but the downscale (the sinc of the multi-order path is not applied)
    out = dg.degrade(hr, 4, _camera_cfg(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.rint(clean * 255).astype(np.uint8))
    # JPEG at the LR size, last: the libjpeg round trip of that LR image
    out = dg.degrade(hr, 4, _camera_cfg(final_jpeg=dg.JpegConfig(prob=1.0, quality=(40, 40))),
                     np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.rint(dg.jpeg(clean, 40) * 255).astype(np.uint8))
    # sensor noise at the LR size: its statistics on a mid-grey image
    grey = np.full((256, 256, 3), 128, np.uint8)
    noisy = _camera_cfg(second=dg.StageConfig(noise=dg.NoiseConfig(
        prob=1.0, gaussian_prob=1.0, sigma=(8.0, 8.0), gray_prob=0.0)))
    out = dg.degrade(grey, 4, noisy, np.random.default_rng(1)).astype(float) - 128.0
    assert out.shape == (64, 64, 3)
    assert abs(out.mean()) < 0.3 and abs(out.std() - 8.0) < 0.4


def test_camera_path_is_seeded_and_leaves_other_configs_alone() -> None:
    hr = _image(64, 48, seed=4)
    cfg = dg.DegradationConfig(enabled=True, clean_prob=0.0, camera_prob=0.5)
    a = [dg.degrade(hr, 4, cfg, np.random.default_rng(s)) for s in range(6)]
    b = [dg.degrade(hr, 4, cfg, np.random.default_rng(s)) for s in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # camera_prob 0 draws nothing extra: the multi-order stream is unchanged
    off = dg.DegradationConfig(enabled=True, clean_prob=0.0)
    ref = [dg.degrade(hr, 4, off, np.random.default_rng(s)) for s in range(3)]
    rng_off = [dg.degrade(hr, 4, dg.DegradationConfig(enabled=True, clean_prob=0.0,
                                                      camera_prob=0.0),
                          np.random.default_rng(s)) for s in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(ref, rng_off, strict=True))
    with pytest.raises(ValueError, match="data.degradation.camera_prob"):
        dg.check_config(dg.DegradationConfig(camera_prob=1.5))
