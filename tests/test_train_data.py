"""Training data: deterministic per-iteration batches, aligned LR/HR patches made exactly
like the benchmark LR images, paired folders, augmentation and source weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnsr.data.resize import imresize
from attnsr.train.config import DataConfig, SourceConfig
from attnsr.train.data import PatchBatches, augment_pair, load_sources, modcrop
from train_fixtures import make_images, one_thread  # noqa: F401


def _sources(tmp_path: Path, **kw: object) -> list:
    make_images(tmp_path / "a", n=3, size=(30, 34))
    cfg = DataConfig(sources=[SourceConfig(hr_dir=str(tmp_path / "a"))], patch_size=6, **kw)
    return load_sources(cfg, 2)


def test_batches_are_a_function_of_seed_and_iteration(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    ds = PatchBatches(src, [1.0], scale=2, patch_size=6, batch_size=4, seed=1)
    again = PatchBatches(src, [1.0], scale=2, patch_size=6, batch_size=4, seed=1)
    other_seed = PatchBatches(src, [1.0], scale=2, patch_size=6, batch_size=4, seed=2)
    lr, hr = ds[7]
    assert lr.shape == (4, 3, 6, 6) and hr.shape == (4, 3, 12, 12)
    assert lr.dtype == torch.float32 and lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(again[7][0], lr) and torch.equal(again[7][1], hr)
    assert not torch.equal(ds[8][0], lr)
    assert not torch.equal(other_seed[7][0], lr)


def test_cached_lr_is_the_benchmark_degradation(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    img = src[0][0]
    assert img.hr.shape == (30, 34, 3)  # mod-cropped to the scale
    np.testing.assert_array_equal(img.lr, imresize(modcrop(img.hr, 2), 0.5))
    ds = PatchBatches(src, [1.0], scale=2, patch_size=6, batch_size=1, augment=False)
    lr, hr = ds.sample(0, 0)
    # Find the crop: the HR patch is at an LR-aligned position of the same image.
    for im in src[0]:
        for y in range(im.lr.shape[0] - 5):
            for x in range(im.lr.shape[1] - 5):
                if np.array_equal(im.lr[y:y + 6, x:x + 6], lr):
                    np.testing.assert_array_equal(im.hr[2 * y:2 * y + 12, 2 * x:2 * x + 12], hr)
                    return
    pytest.fail("LR patch not found in any cached LR image")


def test_hr_scales_add_downscaled_copies_with_their_own_lr(tmp_path: Path) -> None:
    # Scale augmentation: each HR image also appears MATLAB-bicubic downscaled, mod-cropped,
    # with the LR cached from that copy; copies smaller than the HR patch are left out.
    from attnsr.train.data import load_uint8

    src = _sources(tmp_path, hr_scales=[1.0, 0.7, 0.2])[0]
    full = sorted((im for im in src if im.hr_scale == 1.0), key=lambda im: im.path)
    small = sorted((im for im in src if im.hr_scale == 0.7), key=lambda im: im.path)
    assert len(full) == len(small) == 3 and len(src) == 6  # 0.2: 6x7 px < the 12 px patch
    for a, b in zip(full, small, strict=True):
        assert a.path == b.path
        expected = modcrop(imresize(load_uint8(Path(a.path)), 0.7), 2)
        np.testing.assert_array_equal(b.hr, expected)
        np.testing.assert_array_equal(b.lr, imresize(expected, 0.5))


@pytest.mark.parametrize("scales, message", [
    ([1.0, 1.5], r"data.hr_scales: distinct factors in \(0, 1\]"),
    ([0.5, 0.5], "distinct"),
    ([], "distinct"),
])
def test_hr_scales_bad_values(tmp_path: Path, scales: list, message: str) -> None:
    from attnsr.errors import ConfigError
    from attnsr.train.config import load_config
    from train_fixtures import tiny_values

    with pytest.raises(ConfigError, match=message):
        load_config(base=tiny_values(tmp_path, data={"hr_scales": scales}))


def test_hr_scales_need_hr_only_sources(tmp_path: Path) -> None:
    from attnsr.errors import ConfigError
    from attnsr.train.config import load_config
    from train_fixtures import tiny_values

    values = tiny_values(tmp_path, data={"hr_scales": [1.0, 0.8]})
    values["data"]["sources"][0]["lr_dir"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"HR-only sources; data.sources\[0\] has an lr_dir"):
        load_config(base=values)


def test_on_the_fly_lr_resizes_the_hr_patch(tmp_path: Path) -> None:
    src = _sources(tmp_path, lr_cache=False)
    assert src[0][0].lr is None
    ds = PatchBatches(src, [1.0], scale=2, patch_size=6, batch_size=1, augment=False)
    lr, hr = ds.sample(3, 0)
    np.testing.assert_array_equal(lr, imresize(np.ascontiguousarray(hr), 0.5))


def test_paired_folders_match_names_and_align(tmp_path: Path) -> None:
    hr_paths = make_images(tmp_path / "HR", n=2, size=(24, 24), seed=5)
    (tmp_path / "X2").mkdir()
    for i, p in enumerate(hr_paths):
        # a distinct LR (not a resize) so the test sees that the file itself is used
        Image.fromarray(np.full((12, 12, 3), 40 * (i + 1), np.uint8)).save(
            tmp_path / "X2" / f"{p.stem}x2.png")
    cfg = DataConfig(sources=[SourceConfig(hr_dir=str(tmp_path / "HR"),
                                           lr_dir=str(tmp_path / "X2"))], patch_size=4)
    src = load_sources(cfg, 2)
    assert [int(im.lr[0, 0, 0]) for im in src[0]] == [40, 80]


def test_augment_pair_applies_the_same_op() -> None:
    lr = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    hr = np.kron(lr, np.ones((2, 2, 1), lr.dtype))
    outs = set()
    for op in range(8):
        a, b = augment_pair(lr, hr, op)
        np.testing.assert_array_equal(np.kron(a, np.ones((2, 2, 1), a.dtype)), b)
        outs.add(a.tobytes() + bytes(a.shape))
    assert len(outs) == 8  # the 8 symmetries of the square are all different


def test_sources_are_mixed_by_weight(tmp_path: Path) -> None:
    make_images(tmp_path / "a", n=1, size=(16, 16), seed=1)
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "b" / "black.png")
    cfg = DataConfig(sources=[SourceConfig(hr_dir=str(tmp_path / "a"), weight=3.0),
                              SourceConfig(hr_dir=str(tmp_path / "b"), weight=1.0)],
                     patch_size=4)
    ds = PatchBatches(load_sources(cfg, 2), [3.0, 1.0], scale=2, patch_size=4,
                      batch_size=1, augment=False)
    black = [not ds.sample(i, 0)[1].any() for i in range(400)]
    assert 0.18 < np.mean(black) < 0.32  # expected 0.25


def test_dataloader_workers_keep_the_order(tmp_path: Path) -> None:
    from attnsr.train.data import make_loader

    ds = PatchBatches(_sources(tmp_path), [1.0], scale=2, patch_size=6, batch_size=2)
    with_workers = [lr for lr, _ in make_loader(ds, 3, 7, num_workers=2)]
    assert all(torch.equal(a, ds[i][0]) for a, i in zip(with_workers, range(3, 7), strict=True))


@pytest.mark.shared_data
def test_cached_lr_equals_the_benchmark_files(shared_data: Path) -> None:
    from attnsr.train.data import load_uint8

    hr_dir = shared_data / "benchmark" / "Set5" / "HR"
    cfg = DataConfig(sources=[SourceConfig(hr_dir=str(hr_dir))], patch_size=16)
    for im in load_sources(cfg, 4)[0][:2]:
        stem = Path(im.path).stem
        lr_dir = shared_data / "benchmark/Set5/LR_bicubic/X4"
        name = f"{stem}x4.png" if (lr_dir / f"{stem}x4.png").is_file() else f"{stem}.png"
        ref = load_uint8(lr_dir / name)
        np.testing.assert_array_equal(im.lr, ref)
