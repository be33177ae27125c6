"""attnsr.data.io: reading, writing, metadata, bad inputs."""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

import attnsr.data.io as io_mod
from attnsr.data.io import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    encode_png16,
    read_image,
    resolve_max_pixels,
    to_uint8,
    write_image,
)
from attnsr.errors import ImageReadError, ImageWriteError
from attnsr.fs import atomic_write
from image_fixtures import huge_png_bytes

RNG = np.random.default_rng(0)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _save(path: Path, img: Image.Image, **kw: object) -> Path:
    img.save(path, **kw)
    return path


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1)])
def test_read_8bit_exact(tmp_path: Path, mode: str, channels: int) -> None:
    arr = _u8(7, 9, 3) if channels == 3 else _u8(7, 9)
    img = read_image(_save(tmp_path / "a.png", Image.fromarray(arr)))
    assert img.mode == mode and img.bit_depth == 8 and img.format == "PNG"
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (7, 9, channels)
    assert img.is_grayscale == (channels == 1) and img.alpha is None
    np.testing.assert_array_equal(img.to_uint8(), arr.reshape(7, 9, channels))
    assert img.rgb.shape == (7, 9, 3)


def test_read_rgba_and_la(tmp_path: Path) -> None:
    rgba, la = _u8(5, 6, 4), _u8(5, 6, 2)
    a = read_image(_save(tmp_path / "rgba.png", Image.fromarray(rgba)))
    b = read_image(_save(tmp_path / "la.png", Image.fromarray(la)))
    np.testing.assert_array_equal(to_uint8(a.pixels), rgba[..., :3])
    np.testing.assert_array_equal(to_uint8(a.alpha), rgba[..., 3])
    assert b.mode == "LA" and b.is_grayscale
    np.testing.assert_array_equal(to_uint8(b.pixels[..., 0]), la[..., 0])
    np.testing.assert_array_equal(to_uint8(b.alpha), la[..., 1])


def test_read_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 3))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata([0, 1] * 6)
    loaded = read_image(_save(tmp_path / "p.png", img, transparency=1))
    assert loaded.mode == "P" and loaded.pixels.shape == (3, 4, 3)
    np.testing.assert_array_equal(to_uint8(loaded.pixels[0, 0]), [255, 0, 0])
    np.testing.assert_array_equal(to_uint8(loaded.alpha[0, :2]), [255, 0])


def test_read_cmyk_jpeg_as_rgb(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=100)
    loaded = read_image(path)
    assert loaded.mode == "CMYK" and loaded.pixels.shape == (8, 8, 3)
    assert loaded.pixels[..., 0].min() > 0.9 and loaded.pixels[..., 1:].max() < 0.1


def test_read_16bit_gray_png(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, size=(6, 5), dtype=np.uint16)
    loaded = read_image(_save(tmp_path / "g16.png", Image.fromarray(arr)))
    assert loaded.bit_depth == 16 and loaded.is_grayscale
    np.testing.assert_array_equal(np.round(loaded.pixels[..., 0] * 65535), arr)


def _tiff_rgb16_le(arr: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    h, w, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, 8 + 2 + 12 * 9 + 4),
               (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8 + 2 + 12 * 9 + 4 + 6),
               (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data))]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", t, k, c, v) if k == 4 or c > 1 else struct.pack("<HHIHH", t, k, c,
                                                                              v, 0)
        for t, k, c, v in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + data


def test_read_16bit_rgb_tiff(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, size=(4, 7, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.tif"
    path.write_bytes(_tiff_rgb16_le(arr))
    loaded = read_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (4, 7, 3)
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), arr)


def test_exif_orientation_applied_and_reset(tmp_path: Path) -> None:
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:8, :8] = 255  # white block at the top-left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "attnsr-test"  # Make: must survive
    path = _save(tmp_path / "o.jpg", Image.fromarray(arr), exif=exif.tobytes(), quality=100)
    loaded = read_image(path)
    assert loaded.pixels.shape == (32, 16, 3)  # rotated 90 degrees clockwise
    assert loaded.pixels[:8, -8:].min() > 0.9 and loaded.pixels[:8, :8].max() < 0.1
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(loaded.to_uint8(), expected)
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "attnsr-test"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "o.png", Image.fromarray(_u8(3, 5, 3)), exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image(path).to_uint8(), expected)


# ----------------------------------------------------------------------------- bad inputs


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_empty_and_non_image(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image\n")
    with pytest.raises(ImageReadError, match=r"empty file \(0 bytes\)") as err:
        read_image(tmp_path / "empty.png")
    assert str(tmp_path / "empty.png") in str(err.value)
    with pytest.raises(ImageReadError, match="not an image or unsupported format"):
        read_image(tmp_path / "text.png")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(_u8(64, 64, 3)).save(buf, format=fmt)
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt image data"):
        read_image(path)


def test_decompression_bomb_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png_bytes())
    assert path.stat().st_size < 200
    msg = (f"image is 100000x100000 = 10000000000 pixels, above the limit of "
           f"{DEFAULT_MAX_PIXELS} (set --max-pixels / {MAX_PIXELS_ENV})")
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.problem == msg and err.value.path == str(path)


def test_max_pixels_argument_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "a.png", Image.fromarray(_u8(10, 10, 3)))
    with pytest.raises(ImageReadError, match="above the limit of 99 "):
        read_image(path, max_pixels=99)
    monkeypatch.setenv(MAX_PIXELS_ENV, "50")
    assert resolve_max_pixels() == 50
    with pytest.raises(ImageReadError, match="above the limit of 50 "):
        read_image(path)
    assert read_image(path, max_pixels=100).pixels.shape == (10, 10, 3)  # argument wins
    assert resolve_max_pixels(0) is None


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "webp"])
def test_write_8bit_lossless_round_trip(tmp_path: Path, ext: str) -> None:
    arr = _u8(6, 7, 3)
    write_image(tmp_path / f"a.{ext}", arr, quality=100)
    np.testing.assert_array_equal(read_image(tmp_path / f"a.{ext}").to_uint8(), arr)


def test_write_float_rounds_half_away_from_zero(tmp_path: Path) -> None:
    x = np.array([[0.5 / 255, 1.5 / 255, 2.4999 / 255, -0.2, 1.3, 254.5 / 255]])
    np.testing.assert_array_equal(to_uint8(x), [[1, 2, 2, 0, 255, 255]])
    write_image(tmp_path / "g.png", x)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").to_uint8()[..., 0], to_uint8(x))


def test_write_alpha_and_gray_alpha(tmp_path: Path) -> None:
    rgb, a = _u8(5, 4, 3), _u8(5, 4)
    write_image(tmp_path / "rgba.png", rgb, alpha=a.astype(np.float32) / 255)
    loaded = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(loaded.to_uint8(), rgb)
    np.testing.assert_array_equal(to_uint8(loaded.alpha), a)
    write_image(tmp_path / "la.png", _u8(5, 4, 2))
    assert read_image(tmp_path / "la.png").mode == "LA"


def test_write_16bit_gray_and_rgb_png(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, size=(5, 6), dtype=np.uint16)
    rgba = RNG.integers(0, 65536, size=(5, 6, 4), dtype=np.uint16)
    for name, arr in (("g.png", gray), ("rgba.png", rgba), ("rgb.png", rgba[..., :3]),
                      ("la.png", rgba[..., :2])):
        write_image(tmp_path / name, arr, bit_depth=16)
        loaded = read_image(tmp_path / name)
        assert loaded.bit_depth == 16
        back = loaded.pixels if loaded.alpha is None else np.dstack([loaded.pixels,
                                                                     loaded.alpha])
        np.testing.assert_array_equal(np.round(back * 65535).astype(np.uint16),
                                      arr.reshape(back.shape))


def test_png16_encoder_matches_pillow_gray(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, size=(9, 4, 1), dtype=np.uint16)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png16(arr))))
    np.testing.assert_array_equal(decoded, arr[..., 0])


def test_write_keeps_icc_and_exif(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "attnsr"
    for name, depth in (("a.png", 8), ("a.jpg", 8), ("a.webp", 8), ("a.tif", 8), ("b.png", 16)):
        write_image(tmp_path / name, _u8(8, 8, 3), icc_profile=icc, exif=exif.tobytes(),
                    bit_depth=depth)
        loaded = read_image(tmp_path / name)
        assert loaded.icc_profile == icc, name
        kept = Image.Exif()
        kept.load(loaded.exif)
        assert kept[0x010F] == "attnsr", name


def test_write_torch_tensor_and_gray_hint(tmp_path: Path) -> None:
    t = torch.rand(1, 3, 4, 5)
    write_image(tmp_path / "t.png", t)
    np.testing.assert_array_equal(read_image(tmp_path / "t.png").to_uint8(),
                                  to_uint8(t[0].permute(1, 2, 0).numpy()))
    write_image(tmp_path / "g.png", np.full((4, 5, 3), 0.5, np.float32), mode_hint="L")
    assert read_image(tmp_path / "g.png").mode == "L"


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", _u8(4, 4, 3))
    (tmp_path / "keep.png").write_bytes(b"old")
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "keep.png", np.zeros((4, 4, 5)))  # 5 channels: invalid
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "keep.png") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert (tmp_path / "keep.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png", "ok.png"]


def test_write_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="unknown image extension"):
        write_image(tmp_path / "a.xyz", _u8(4, 4, 3))
    assert list(tmp_path.iterdir()) == []
    write_image(tmp_path / "a.xyz", _u8(4, 4, 3), format="jpg")  # explicit format wins
    assert read_image(tmp_path / "a.xyz").format == "JPEG"


# ----------------------------------------------------------------------------- write memory


def _traced_peak(fn: object) -> int:
    """Peak bytes traced (numpy registers its buffers with tracemalloc) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ext,depth,dtype", [("png", 8, np.uint8), ("jpg", 8, np.uint8),
                                             ("png", 16, np.uint16), ("png", 8, np.float32)])
def test_write_makes_no_whole_image_float_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, depth: int, dtype: type
) -> None:
    # small blocks, so that the bound tests block-wise conversion on a 1.4 MB image (the
    # old write path peaked at 4x (float32 in) to 20x (uint8 in) the array's bytes)
    monkeypatch.setattr(io_mod, "_CHUNK_ELEMENTS", 1 << 14)
    monkeypatch.setattr(io_mod, "_IDAT_BYTES", 1 << 14)
    rng = np.random.default_rng(1)
    arr = (rng.random((400, 600, 3), dtype=np.float32) if dtype == np.float32 else
           rng.integers(0, np.iinfo(dtype).max + 1, size=(400, 600, 3), dtype=dtype))
    path = tmp_path / f"big.{ext}"
    peak = _traced_peak(lambda: write_image(path, arr, bit_depth=depth, quality=100))
    # integers: written as they are (only encoder buffers); floats: the uint8 result
    # (a quarter of the input) plus one block
    assert peak < (0.5 if dtype == np.float32 else 0.3) * arr.nbytes, peak / arr.nbytes
    back = read_image(path)
    if ext == "png" and depth == 16:
        np.testing.assert_array_equal(np.round(back.pixels * 65535).astype(np.uint16), arr)
    elif ext == "png":
        np.testing.assert_array_equal(back.to_uint8(), arr if dtype == np.uint8 else to_uint8(arr))
    else:
        assert np.abs(back.to_uint8().astype(int) - arr).mean() < 3  # JPEG q100


def test_block_wise_conversion_matches_whole_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(2).random((37, 23, 4))  # float64, alpha channel
    write_image(tmp_path / "whole.png", x, mode_hint="L")
    write_image(tmp_path / "whole16.png", x, bit_depth=16)
    monkeypatch.setattr(io_mod, "_CHUNK_ELEMENTS", 50)  # a row or two per block
    monkeypatch.setattr(io_mod, "_IDAT_BYTES", 64)  # many IDAT chunks
    write_image(tmp_path / "rows.png", x, mode_hint="L")
    write_image(tmp_path / "rows16.png", x, bit_depth=16)
    for a, b in (("whole.png", "rows.png"), ("whole16.png", "rows16.png")):
        ia, ib = read_image(tmp_path / a), read_image(tmp_path / b)
        assert ia.mode == ib.mode and ia.bit_depth == ib.bit_depth
        np.testing.assert_array_equal(ia.pixels, ib.pixels)
        np.testing.assert_array_equal(ia.alpha, ib.alpha)
    assert read_image(tmp_path / "rows.png").mode == "LA"
    expected = np.floor(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(x), expected)  # block-wise, 50 elements a block
