"""Streamed output (finished strips straight to a PNG/TIFF encoder) and allocator settings:
the file decodes to the in-memory path's pixels, keeps its metadata, and never holds the
whole output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from attnsr.data.io import (
    encode_png16,
    is_attnsr_output,
    read_image,
    software_tag,
    stream_format,
    write_image,
    write_image_rows,
)
from attnsr.errors import ImageWriteError
from attnsr.inference.tiling import (
    array_sink,
    tiled_forward,
    tiled_rows,
    tiled_rows_quantized,
)
from attnsr.inference.upscale import Upscaler, save_like

RNG = np.random.default_rng(0)
SRC = Path(__file__).resolve().parents[1] / "src"
MARK = "attnsr test (bicubic, x2)"


@pytest.fixture(scope="module")
def up() -> Upscaler:
    """Bicubic x2 with tiles of 48 px: a 70x53 image runs as 2x2 tiles (blending and
    strip flushes happen), alpha as its own plane."""
    return Upscaler("bicubic", scale=2, tile=48, device="cpu")


def _source(tmp_path: Path, bits: int, channels: int) -> Path:
    hi = 256 if bits == 8 else 65536
    arr = RNG.integers(0, hi, (53, 70, channels)).astype(np.uint8 if bits == 8 else np.uint16)
    path = tmp_path / f"src{bits}_{channels}.png"
    if bits == 16:
        path.write_bytes(encode_png16(arr))
    else:
        Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)
    return path


def _same_pixels(a: Path, b: Path) -> bool:
    x, y = read_image(a), read_image(b)
    same_alpha = (x.alpha is None and y.alpha is None) or (
        x.alpha is not None and y.alpha is not None and np.array_equal(x.alpha, y.alpha))
    return (x.bit_depth == y.bit_depth and x.mode == y.mode and same_alpha
            and np.array_equal(x.pixels, y.pixels))


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_streamed_equals_in_memory(up: Upscaler, tmp_path: Path, ext: str, bits: int,
                                   channels: int) -> None:
    img = read_image(_source(tmp_path, bits, channels))
    ref, streamed = tmp_path / f"ref.{ext}", tmp_path / f"stream.{ext}"
    save_like(ref, up.upscale_loaded(img), img, software=MARK)
    mp = up.write_upscaled(img, streamed, software=MARK)
    assert mp == pytest.approx(70 * 53 * 4 / 1e6)
    assert _same_pixels(ref, streamed)
    with Image.open(streamed) as im:  # Pillow reads it (and the size is right)
        assert im.size == (140, 106)
    if ext == "png" or bits == 8 or channels == 1:  # streamable
        assert stream_format(streamed, bit_depth=bits, channels=channels) is not None


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_streamed_keeps_metadata(up: Upscaler, tmp_path: Path, ext: str) -> None:
    exif = Image.Exif()
    exif[0x010F] = "attnsr-make"  # Make
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "meta.png"
    Image.fromarray(RNG.integers(0, 256, (53, 70, 3), dtype=np.uint8)).save(
        src, icc_profile=icc, exif=exif.tobytes())
    img = read_image(src)
    dst = tmp_path / f"out.{ext}"
    up.write_upscaled(img, dst, software=MARK)
    out = read_image(dst)
    assert out.icc_profile == icc
    assert out.exif is not None
    loaded = Image.Exif()
    loaded.load(out.exif)
    assert loaded[0x010F] == "attnsr-make"
    assert software_tag(dst) == MARK and is_attnsr_output(dst)


def test_jpeg_keeps_the_array_path(up: Upscaler, tmp_path: Path) -> None:
    img = read_image(_source(tmp_path, 8, 3))
    assert stream_format(tmp_path / "x.jpg", bit_depth=8, channels=3) is None
    assert stream_format(tmp_path / "x.tif", bit_depth=16, channels=3) is None
    up.write_upscaled(img, tmp_path / "x.jpg", software=MARK)
    assert read_image(tmp_path / "x.jpg").width == 140 and is_attnsr_output(tmp_path / "x.jpg")


def test_write_image_rows_blocks_equal_write_image(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, (37, 23, 3)).astype(np.uint16)
    blocks = (arr[r : r + 5] for r in range(0, 37, 5))
    write_image_rows(tmp_path / "a.png", blocks, width=23, height=37, channels=3,
                     bit_depth=16)
    write_image(tmp_path / "b.png", arr, bit_depth=16)
    assert _same_pixels(tmp_path / "a.png", tmp_path / "b.png")


def test_short_stream_fails_atomically(tmp_path: Path) -> None:
    dst = tmp_path / "short.png"
    arr = np.zeros((10, 8, 1), np.uint8)
    with pytest.raises(ImageWriteError, match="rows"):
        write_image_rows(dst, [arr[:4]], width=8, height=10, channels=1)
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary left


def test_tiled_rows_cover_the_output_in_order() -> None:
    up = Upscaler("bicubic", scale=2, tile=48, device="cpu")
    lr = torch.rand(1, 3, 101, 67)
    blocks = list((r0, rows.clone()) for r0, rows in tiled_rows(up.runner, lr, 2, 48, 12))
    assert [r0 for r0, _ in blocks] == list(np.cumsum([0] + [b.shape[1] for _, b in blocks])[:-1])
    whole = torch.cat([b for _, b in blocks], dim=1)
    assert torch.equal(whole[None], tiled_forward(up.runner, lr, 2, 48, 12))


def _conv_model(scale: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1), torch.nn.PixelShuffle(scale),
        torch.nn.Sigmoid()).eval()


@pytest.mark.parametrize(
    ("h", "w", "scale", "tile", "overlap"),
    # 2x2 grid; a flush last tile with a tiny stride (carried rows beyond the next
    # strip's final rows); overlap over half the tile (three tiles on one column); one
    # tile; no overlap
    [(37, 53, 2, 32, 20), (45, 71, 2, 36, 28), (40, 40, 3, 16, 12), (23, 30, 4, 64, 8),
     (33, 65, 2, 16, 0)],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_quantized_rows_equal_tiled_forward(h: int, w: int, scale: int, tile: int,
                                            overlap: int, dtype: type) -> None:
    """The streaming accumulator (float only for the tile and the carried band) gives
    the same values as the strip accumulator, for every dtype the sinks write."""
    model = _conv_model(scale)
    lr = torch.rand(1, 3, h, w)
    ref = tiled_forward(model, lr, scale, tile, overlap,
                        out=np.zeros((h * scale, w * scale, 3), dtype))
    got = np.full_like(ref, 7)
    bufs: list[np.ndarray] = []

    def buffer(rows: int, width: int) -> np.ndarray:
        bufs.append(np.full((rows, width, 3), 9, dtype))
        return bufs[-1]

    def quantize(values: torch.Tensor, target: np.ndarray) -> None:
        array_sink(target)(0, values)

    rows = 0
    for r0, block in tiled_rows_quantized(model, lr, scale, tile, overlap, quantize, buffer):
        assert r0 == rows
        got[r0 : r0 + block.shape[0]] = block
        rows += block.shape[0]
    assert rows == h * scale
    np.testing.assert_array_equal(got, ref)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from attnsr.data.io import read_image
    from attnsr.inference.upscale import Upscaler, save_like

    def status(key):  # kB
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    torch.set_num_threads(1)
    src, dst, mode = sys.argv[1:4]
    up = Upscaler("bicubic", scale=4, tile=64, device="cpu")
    img = read_image(src)
    up.write_upscaled(read_image(sys.argv[4]), dst)  # warm-up: every buffer kind seen once
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident set
    before = status("VmRSS:")
    if mode == "stream":
        up.write_upscaled(img, dst)
    else:
        save_like(dst, up.upscale_loaded(img), img)
    print(json.dumps({"growth": status("VmHWM:") - before}))
""")


def _peak_growth(tmp_path: Path, mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "tall.png"),
         str(tmp_path / f"out_{mode}.tif"), mode, str(tmp_path / "small.png")],
        capture_output=True, text=True, env=env, check=True)
    return int(json.loads(res.stdout.strip().splitlines()[-1])["growth"])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_streamed_peak_memory_is_bounded(tmp_path: Path) -> None:
    """A tall 150x2000 RGB image x4 to TIFF (600x8000 = 14.4 MB out, uint8; TIFF: no
    compression time): streamed, the peak grows by well under the output size (one
    strip, ~2 MB); the array path holds the output and Pillow's copy of it (about twice
    the output). ~20 s on a loaded 2-core machine (two fresh processes)."""
    yy = np.linspace(0, 40, 2000, dtype=np.float32)[:, None, None]
    xx = np.linspace(0, 9, 150, dtype=np.float32)[None, :, None]
    arr = ((np.sin(yy + xx * np.arange(1, 4)) + 1) * 127.5).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "tall.png", compress_level=1)
    Image.fromarray(arr[:200]).save(tmp_path / "small.png")
    out_bytes = 600 * 8000 * 3
    streamed = _peak_growth(tmp_path, "stream")
    held = _peak_growth(tmp_path, "array")
    assert streamed < 0.5 * out_bytes, (streamed, held)
    assert held > out_bytes, (streamed, held)  # the measurement sees what streaming saves
    assert _same_pixels(tmp_path / "out_stream.tif", tmp_path / "out_array.tif")


def test_tune_malloc_applies_and_can_be_turned_off() -> None:
    code = "from attnsr.malloc import tune_malloc; print(tune_malloc())"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=env, check=True).stdout.strip()
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "ATTNSR_MALLOC": "system"}, check=True).stdout.strip()
    assert off == "False"
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert on == str(glibc)
