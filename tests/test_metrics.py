"""attnsr.metrics: RCAN's MATLAB PSNR/SSIM protocol."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnsr.metrics import (
    calc_psnr,
    calc_ssim,
    evaluate_pair,
    gaussian_window,
    ssim_index,
    y_channel,
)

RNG = np.random.default_rng(0)


def _parse_rcan_results(text: str) -> dict[tuple[int, str], tuple[float, float]]:
    """Per-image (psnr, ssim) of the first method (RCAN) in the MATLAB results file."""
    rcan = text.split("Method_2")[0]
    pattern = r"x(\d) \d+ (\w+)_RCAN_x\d\.png: PSNR= ([\d.]+) SSIM= ([\d.]+)"
    return {(int(s), n): (float(p), float(q)) for s, n, p, q in re.findall(pattern, rcan)}


@pytest.mark.shared_data
def test_reproduces_rcan_matlab_numbers(shared_data: Path) -> None:
    root = shared_data / "reference" / "rcan_set5"
    ref = _parse_rcan_results((root / "PSNR_SSIM_Results_BI_model.txt").read_text())
    checked = 0
    for (scale, name), (psnr_ref, ssim_ref) in sorted(ref.items()):
        if not (root / f"x{scale}").is_dir():
            continue  # x8 outputs are not in the fixture
        sr = np.asarray(Image.open(root / f"x{scale}" / "SR" / f"{name}.png"))
        hr = np.asarray(Image.open(root / f"x{scale}" / "HR" / f"{name}.png"))
        psnr, ssim = evaluate_pair(sr, hr, scale)
        assert psnr == pytest.approx(psnr_ref, abs=1e-4), (scale, name)
        assert ssim == pytest.approx(ssim_ref, abs=1e-5), (scale, name)
        checked += 1
    assert checked == 15


def test_y_channel_formula() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 20, 30]]], np.uint8)
    expected = 16 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255
    np.testing.assert_allclose(y_channel(img), expected, atol=1e-4)  # single precision
    assert y_channel(img)[0, 1] == pytest.approx(235.0, abs=1e-4)
    gray = np.array([[[0], [128], [255]]], np.uint8)
    np.testing.assert_allclose(y_channel(gray), [[0, 128, 255]], atol=1e-4)


def test_psnr_known_value_and_identity() -> None:
    hr = RNG.integers(0, 250, size=(20, 24), dtype=np.uint8)
    sr = hr + np.uint8(3)  # gray: constant error 3 -> mse 9 (to single precision)
    assert calc_psnr(sr, hr, crop_border=2) == pytest.approx(10 * np.log10(255**2 / 9), abs=1e-4)
    assert calc_psnr(hr, hr, crop_border=0) == float("inf")
    assert calc_ssim(hr, hr, crop_border=0) == pytest.approx(1.0, abs=1e-12)


def test_border_is_shaved_and_gray_layouts_agree() -> None:
    hr = RNG.integers(0, 256, size=(30, 32, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + RNG.integers(-5, 6, hr.shape), 0, 255).astype(np.uint8)
    base = evaluate_pair(sr, hr, 3)
    noisy = sr.copy()
    noisy[:3], noisy[:, -3:] = 0, 255  # only the shaved border changes
    assert evaluate_pair(noisy, hr, 3) == base
    assert evaluate_pair(sr[..., 0], hr[..., 0], 2) == evaluate_pair(sr[..., :1], hr[..., :1], 2)


def _ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """ssim_index with an explicit 2-D window and loops (a slow, independent reference)."""
    g = gaussian_window()
    w = np.outer(g, g)
    k = w.shape[0]
    vals = []
    for i in range(a.shape[0] - k + 1):
        for j in range(a.shape[1] - k + 1):
            pa, pb = a[i : i + k, j : j + k], b[i : i + k, j : j + k]
            m1, m2 = (w * pa).sum(), (w * pb).sum()
            v1, v2 = (w * pa * pa).sum() - m1**2, (w * pb * pb).sum() - m2**2
            c = (w * pa * pb).sum() - m1 * m2
            c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
            vals.append((2 * m1 * m2 + c1) * (2 * c + c2) / ((m1**2 + m2**2 + c1) * (v1 + v2 + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_2d_window() -> None:
    w = np.outer(gaussian_window(), gaussian_window())
    assert w.shape == (11, 11) and w.sum() == pytest.approx(1.0)
    assert w[5, 5] / w[5, 6] == pytest.approx(np.exp(1 / (2 * 1.5**2)))
    a = RNG.random((16, 19)) * 255
    b = np.clip(a + RNG.normal(0, 20, a.shape), 0, 255)
    assert ssim_index(a, b) == pytest.approx(_ssim_direct(a, b), abs=1e-12)


def test_rgb_option() -> None:
    hr = RNG.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + RNG.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    d = (sr.astype(float) - hr)[4:-4, 4:-4]
    expected = 10 * np.log10(255**2 / np.mean(d**2))
    assert calc_psnr(sr, hr, crop_border=4, y_channel=False) == pytest.approx(expected)
    per_channel = [calc_ssim(sr[..., c], hr[..., c], crop_border=4) for c in range(3)]
    assert calc_ssim(sr, hr, crop_border=4, y_channel=False) == pytest.approx(
        np.mean(per_channel), abs=1e-4)  # gray path is in single precision


def test_float_inputs_are_rounded_first() -> None:
    hr = RNG.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    sr_f = np.clip(hr / 255 + RNG.normal(0, 0.02, hr.shape), 0, 1)
    sr_u8 = np.floor(sr_f * 255 + 0.5).astype(np.uint8)
    expected = evaluate_pair(sr_u8, hr, 2)
    assert evaluate_pair(sr_f, hr, 2) == expected
    tensor = torch.from_numpy(sr_f).permute(2, 0, 1)[None]  # (1, 3, H, W)
    assert evaluate_pair(tensor, hr, 2) == expected


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        calc_psnr(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), crop_border=0)
    with pytest.raises(ValueError, match="at least 11x11"):
        calc_ssim(np.zeros((12, 12), np.uint8), np.zeros((12, 12), np.uint8), crop_border=2)
