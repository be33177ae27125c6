"""Image reading and (atomic) writing.

``read_image`` decodes PNG, JPEG, WebP, TIFF and BMP through Pillow into float32 pixels in
[0, 1], applies the EXIF orientation, keeps the ICC profile and EXIF block, keeps 16-bit
precision (grayscale, RGB and RGBA PNG/TIFF) and refuses oversized images from their header,
before anything is decoded. Every failure is an :class:`~attnsr.errors.ImageReadError`
naming the file.

``write_image`` writes through :func:`attnsr.fs.atomic_write` (a temporary file in the
target's directory, then ``os.replace``), so a failed write never leaves a partial file.
16-bit PNGs are written by a small PNG encoder here, since Pillow cannot write 16-bit
colour PNGs; it streams rows through zlib. Integer pixels (uint8, uint16) already in the
output's depth and layout are handed to the encoder as they are; anything else is
converted a few rows at a time, so writing never makes a whole-image float copy (a
16000x12000 result is written in about its own size again, Pillow's copy, on top of the
array).

Pillow's own decompression-bomb check is replaced by ours (configurable, with a message
that says how to raise the limit): ``Image.open`` runs with ``Image.MAX_IMAGE_PIXELS``
lifted for the duration of the header parse only.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from attnsr.data.media import VIDEO_EXTENSIONS
from attnsr.errors import AttnsrError, ConfigError, ImageReadError, ImageWriteError
from attnsr.fs import atomic_write

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's default limit
MAX_PIXELS_ENV = "ATTNSR_MAX_PIXELS"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_TO_RGB_MODES = frozenset({"RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_ORIENTATION_TAG = 0x0112
# TIFF tags that are metadata rather than image structure (kept as EXIF on read)
_TIFF_EXIF_TAGS = frozenset({269, 270, 271, 272, 274, 285, 305, 306, 315, 316, 33432,
                             0x8769, 0x8825})
# 16-bit colour raw modes Pillow decodes to 8 bits: decoding again with the opposite byte
# order yields the low bytes (same bits per pixel, so PNG unfiltering is unchanged).
_SWAPPED_16 = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B",
               "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B"}
_PILLOW_LOCK = threading.Lock()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IDAT_BYTES = 1 << 18  # compressed bytes per IDAT chunk (any size is valid)

ImageFile.LOAD_TRUNCATED_IMAGES = False
MARKER_PREFIX = "attnsr"  # what write_image(software=...) starts with for attnsr outputs
_TIFF_SOFTWARE = 305  # the TIFF "Software" tag


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedImage:
    """A decoded image.

    Attributes:
        pixels: float32 ``(H, W, C)`` in [0, 1]; ``C = 1`` for grayscale, 3 for colour.
        alpha: float32 ``(H, W)`` in [0, 1], or None.
        mode: the file's Pillow mode (``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``I;16`` ...).
        bit_depth: 8 or 16 (bits per sample kept in ``pixels``).
        icc_profile: the embedded ICC profile, or None.
        exif: the EXIF block with the orientation reset to 1 (it is applied on read), or None.
        path: where it was read from.
        format: Pillow's format name (``PNG``, ``JPEG`` ...).
        n_frames: frames in the file (animated GIF/WebP/APNG, multi-page TIFF); only the
            first is in ``pixels``.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    path: Path | None = None
    format: str | None = None
    n_frames: int = 1

    @property
    def is_grayscale(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def rgb(self) -> np.ndarray:
        """float32 ``(H, W, 3)``: grayscale replicated to three channels."""
        return np.repeat(self.pixels, 3, axis=2) if self.is_grayscale else self.pixels

    def to_uint8(self) -> np.ndarray:
        """uint8 ``(H, W, C)`` of ``pixels`` (MATLAB rounding; exact for 8-bit files)."""
        return to_uint8(self.pixels)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8 with MATLAB's ``im2uint8`` rounding (half away from zero)."""
    return _quantize(x, 255.0, np.uint8)


def to_uint16(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint16 (rounded half away from zero)."""
    return _quantize(x, 65535.0, np.uint16)


# Elements converted at a time: keeps float64 temporaries at ~8 MB for any image size.
_CHUNK_ELEMENTS = 1 << 20


def _quantize(x: Any, maxval: float, dtype: Any) -> np.ndarray:
    """``floor(clip(x, 0, 1) * maxval + 0.5)`` as ``dtype``, in float64, a block of
    leading-axis slices at a time (no whole-array float64 temporary)."""
    x = np.asarray(x)

    def block(b: np.ndarray) -> np.ndarray:
        return np.floor(np.clip(b.astype(np.float64), 0.0, 1.0) * maxval + 0.5).astype(dtype)

    if x.ndim == 0 or x.size <= _CHUNK_ELEMENTS:
        return block(x)
    out = np.empty(x.shape, dtype)
    step = max(1, _CHUNK_ELEMENTS // (x.size // x.shape[0]))
    for i in range(0, x.shape[0], step):
        out[i : i + step] = block(x[i : i + step])
    return out


# ----------------------------------------------------------------------------- reading


def resolve_max_pixels(max_pixels: int | None = None) -> int | None:
    """The pixel limit in force: ``max_pixels`` if given, else ``$ATTNSR_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`. A value <= 0 means no limit (returns None)."""
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(env.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{MAX_PIXELS_ENV}={env!r}: not an integer") from None
    return int(max_pixels) if max_pixels > 0 else None


def _check_file(path: Path) -> None:
    """Fail early, with a clear problem, on paths that cannot be an image file."""
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror}") from exc
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


def _open(path: Path) -> Image.Image:
    """``Image.open`` (header only) with Pillow's own pixel limit lifted: ours applies."""
    try:
        with _PILLOW_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image or unsupported format") from None
    except PermissionError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror}") from exc
    except Exception as exc:  # Pillow raises many types on broken headers
        raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc


def _check_size(path: Path, size: tuple[int, int], limit: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageReadError(path, f"invalid image size {w}x{h}")
    if limit is not None and w * h > limit:
        raise ImageReadError(
            path,
            f"image is {w}x{h} = {w * h} pixels, above the limit of {limit} "
            f"(set --max-pixels / {MAX_PIXELS_ENV})",
        )


def _reset_orientation(exif: bytes) -> bytes:
    """``exif`` with IFD0's orientation tag set to 1, patched in place (nothing else moves)."""
    start = 6 if exif.startswith(b"Exif\x00\x00") else 0
    order = {b"II": "<", b"MM": ">"}.get(exif[start : start + 2])
    if order is None or len(exif) < start + 8:
        return exif
    out = bytearray(exif)
    ifd = start + struct.unpack_from(order + "I", exif, start + 4)[0]
    if ifd + 2 > len(exif):
        return exif
    for i in range(struct.unpack_from(order + "H", exif, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(exif):
            break
        tag, typ = struct.unpack_from(order + "HH", exif, entry)
        if tag == _ORIENTATION_TAG and typ == 3:  # SHORT, value stored inline
            struct.pack_into(order + "H", out, entry + 8, 1)
    return bytes(out)


def _tiff_exif(img: Image.Image) -> bytes | None:
    """A TIFF's descriptive tags (its EXIF lives in the image's own IFD) as an EXIF block."""
    tags = img.getexif()
    exif = Image.Exif()
    for tag in _TIFF_EXIF_TAGS & set(tags):
        exif[tag] = tags.get_ifd(tag) if tag in (0x8769, 0x8825) else tags[tag]
    return exif.tobytes() if len(exif) else None


def _metadata(img: Image.Image) -> tuple[int, bytes | None, bytes | None]:
    """(EXIF orientation, EXIF bytes with orientation reset, ICC profile) of ``img``."""
    try:
        orientation = int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make the image unreadable
        orientation = 1
    exif = img.info.get("exif") or (_tiff_exif(img) if img.format == "TIFF" else None)
    if exif is not None and orientation != 1:
        exif = _reset_orientation(exif)
    icc = img.info.get("icc_profile") or None
    if img.mode == "CMYK":
        icc = None  # a CMYK profile does not describe the RGB pixels we return
    return orientation, exif, icc


def _rawmode(img: Image.Image) -> str | None:
    """The raw mode of ``img``'s single tile (before load), or None."""
    if len(img.tile) != 1:
        return None
    args = img.tile[0].args
    return args if isinstance(args, str) else (args[0] if args else None)


def _decode_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Decode ``path`` again, unpacking its single tile with ``rawmode``; as uint16."""
    with _open(path) as img:
        tile = img.tile[0]
        args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
        img.tile = [tile._replace(args=args)]
        img.load()
        return np.asarray(img, dtype=np.uint16)


def _decode_wide16(path: Path, img: Image.Image) -> tuple[np.ndarray, float] | None:
    """16-bit RGB(A) and gray+alpha files, which Pillow decodes to 8 bits: full precision.

    Returns (uint16 ``(H, W, C)``, 65535) or None when ``img`` is not such a file.
    """
    rawmode = _rawmode(img)
    if rawmode == "LA;16B" and img.format == "PNG":
        raw = _decode_with_rawmode(path, "RGBA")  # 32 bits per pixel: the bytes as they are
        return raw[..., 0::2] * 256 + raw[..., 1::2], 65535.0
    if rawmode not in _SWAPPED_16:
        return None
    # Pillow's own raw mode picks each sample's high byte; the swapped one its low byte.
    hi = _decode_with_rawmode(path, rawmode)
    lo = _decode_with_rawmode(path, _SWAPPED_16[rawmode])
    return hi * 256 + lo, 65535.0


def _decode_pillow(img: Image.Image) -> tuple[np.ndarray, float]:
    """Pixels of ``img`` as an array ``(H, W, C)`` (C = 1..4, alpha last) and their maximum."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.clip(np.asarray(img).astype(np.int64), 0, 65535).astype(np.uint16)
        return arr[..., None], 65535.0
    if mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[..., None], 1.0
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    elif mode in ("1", "La"):
        img = img.convert("L" if mode == "1" else "LA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    elif mode in _TO_RGB_MODES or mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    return (arr[..., None] if arr.ndim == 2 else arr), 255.0


def _split(arr: np.ndarray, maxval: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) integers -> float32 pixels (H, W, 1|3) in [0, 1] and alpha (H, W) or None."""
    x = arr.astype(np.float32) / np.float32(maxval)
    if x.shape[2] in (2, 4):
        return np.ascontiguousarray(x[..., :-1]), np.ascontiguousarray(x[..., -1])
    return np.ascontiguousarray(x), None


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` to ``(H, W, C)`` as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
        3: lambda a: a[::-1, ::-1],  # ROTATE_180
        4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
        5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
        6: lambda a: np.rot90(a, -1),  # ROTATE_270 (90 degrees clockwise)
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
        8: lambda a: np.rot90(a, 1),  # ROTATE_90 (counter-clockwise)
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file into a :class:`LoadedImage` (float32 pixels in [0, 1]).

    Args:
        path: PNG, JPEG, WebP, TIFF or BMP file (animated/multi-page: the first frame).
        max_pixels: refuse images with more pixels than this, checked from the header
            before decoding. None: ``$ATTNSR_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`;
            0 or less: no limit.

    Raises:
        ImageReadError: missing, empty, directory, not an image, truncated/corrupt, too big.
    """
    path = Path(path)
    limit = resolve_max_pixels(max_pixels)
    _check_file(path)
    img = _open(path)
    with img:
        _check_size(path, img.size, limit)
        fmt, mode = img.format, img.mode
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        try:
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncation must be an error
            wide = _decode_wide16(path, img)  # before _metadata: PNG getexif() loads
            orientation, exif, icc = _metadata(img)
            if wide is None:
                img.load()
            arr, maxval = wide if wide is not None else _decode_pillow(img)
        except AttnsrError:
            raise
        except MemoryError:
            raise ImageReadError(path, "not enough memory to decode the image") from None
        except Exception as exc:
            raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc
    pixels, alpha = _split(_orient(arr, orientation), maxval)
    return LoadedImage(
        pixels=pixels, alpha=alpha, mode=mode, bit_depth=16 if maxval > 255 else 8,
        icc_profile=icc, exif=exif, path=path, format=fmt, n_frames=n_frames,
    )


# ----------------------------------------------------------------------------- writing


def _as_array(pixels: Any) -> np.ndarray:
    """numpy ``(H, W[, C])`` or torch ``([1,] C, H, W)`` -> ``(H, W, C)``, dtype kept
    (torch: float32), a view where possible: no conversion happens here."""
    if hasattr(pixels, "detach"):  # torch tensor: channels first by convention
        arr = pixels.detach().float().cpu().numpy()
        arr = arr[0] if arr.ndim == 4 and arr.shape[0] == 1 else arr
        arr = np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr
    else:
        arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or 0 in arr.shape:
        raise ValueError(f"expected an (H, W[, 1-4]) image, got shape {arr.shape}")
    return arr


def _to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 -> float32 in [0, 1]; floats as they are (float64 halves must round
    as MATLAB does); other dtypes -> float64 values unchanged."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _split_alpha(x: np.ndarray, alpha: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour ``(H, W, 1|3)`` and alpha ``(H, W)`` or None (views, dtypes kept)."""
    if x.shape[2] in (2, 4):
        if alpha is not None:
            raise ValueError("alpha given twice (as a channel and as alpha=)")
        return x[..., :-1], x[..., -1]
    if alpha is not None:
        alpha = _as_array(alpha)[..., 0]
        if alpha.shape != x.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {x.shape[:2]}")
    return x, alpha


def _convert(x: np.ndarray, dtype: Any, luma: bool) -> np.ndarray:
    """A block ``(h, W, C)`` of any dtype -> ``dtype`` (uint8 / uint16); ``luma``: to
    ITU-R 601-2 luma ``(h, W, 1)`` first, as Pillow's ``convert("L")``."""
    if x.dtype == dtype and not luma:
        return x
    f = _to_float(x)
    if luma:
        f = (f @ np.array([0.299, 0.587, 0.114], dtype=f.dtype))[..., None]
    return _quantize(f, 255.0 if dtype == np.uint8 else 65535.0, dtype)


def _pack(color: np.ndarray, alpha: np.ndarray | None, dtype: Any, luma: bool) -> np.ndarray:
    """Colour ``(H, W, 1|3)`` and alpha ``(H, W)`` or None -> one contiguous ``(H, W, C)``
    array of ``dtype``, alpha last, converted a few rows at a time (memory: the result
    plus one block)."""
    h, w, c = color.shape
    nc = 1 if luma else c
    out = np.empty((h, w, nc + (alpha is not None)), dtype)
    step = max(1, _CHUNK_ELEMENTS // (w * out.shape[2]))
    for r in range(0, h, step):
        out[r : r + step, :, :nc] = _convert(color[r : r + step], dtype, luma)
        if alpha is not None:
            out[r : r + step, :, nc:] = _convert(alpha[r : r + step, :, None], dtype, False)
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class _Planes:
    """What :func:`write_image` encodes, before any conversion (views of the input).

    Attributes:
        whole: the input ``(H, W, C)``, dtype as given.
        color: ``(H, W, 1|3)`` view of ``whole``.
        alpha: ``(H, W)`` alpha (a view of ``whole`` or the ``alpha=`` argument) or None.
        luma: whether 3-channel colour is written gray (a grayscale mode hint).
    """

    whole: np.ndarray
    color: np.ndarray
    alpha: np.ndarray | None
    luma: bool

    @property
    def color_channels(self) -> int:
        return 1 if self.luma else int(self.color.shape[2])


def _planes(pixels: Any, alpha: Any, mode_hint: str | None, keep_alpha: bool) -> _Planes:
    """Split ``pixels`` (and ``alpha=``) into :class:`_Planes`; ``keep_alpha`` False
    drops alpha (JPEG)."""
    x = _as_array(pixels)
    color, alpha_a = _split_alpha(x, alpha)
    return _Planes(whole=x, color=color, alpha=alpha_a if keep_alpha else None,
                   luma=mode_hint in _GRAY_MODES and color.shape[2] == 3)


def _prepare(planes: _Planes, dtype: Any) -> np.ndarray:
    """The ``(H, W, C)`` ``dtype`` array to encode (C = 1..4, alpha last). An input that
    already is exactly that is passed through uncopied; otherwise it is converted in row
    blocks (never a whole-image float copy)."""
    x = planes.whole
    has_alpha_channel = x.shape[2] in (2, 4)
    # written as is: same dtype, no luma, and alpha exactly where the input has it
    as_is = planes.alpha is not None if has_alpha_channel else planes.alpha is None
    if x.dtype == dtype and not planes.luma and as_is:
        return np.ascontiguousarray(x)
    return _pack(planes.color, planes.alpha, dtype, planes.luma)


def _format_for(path: Path, fmt: str | None) -> str:
    if fmt:
        return {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt.upper(), fmt.upper())
    ext = path.suffix.lower()
    registered = Image.registered_extensions()
    if ext not in registered:
        raise ImageWriteError(path, f"unknown image extension {ext!r} (use .png, .jpg, .webp, "
                                    ".tif or .bmp)")
    return registered[ext]


def _write_chunk(fh: BinaryIO, kind: bytes, data: bytes) -> None:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    fh.write(struct.pack(">I", len(data)) + kind)
    fh.write(data)
    fh.write(struct.pack(">I", crc))


class PngWriter:
    """A streaming PNG encoder: rows go in top to bottom, a block at a time, and out
    through zlib into ``IDAT`` chunks (memory: one block, whatever the image height).

    8 or 16 bits per sample; ``channels`` 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. Rows use
    the PNG "Up" filter (vectorisable, compresses photos well enough). Metadata as
    Pillow writes it: ``iCCP`` (ICC profile), ``eXIf`` (EXIF), ``tEXt`` ``Software``.

    >>> w = PngWriter(fh, width=W, height=H, channels=3, bit_depth=8)
    >>> w.write(rows)  # (n, W, 3) uint8, any n, in order
    >>> w.close()      # after all H rows: the IEND chunk
    """

    def __init__(self, fh: BinaryIO, *, width: int, height: int, channels: int,
                 bit_depth: int = 8, icc_profile: bytes | None = None,
                 exif: bytes | None = None, software: str | None = None) -> None:
        if bit_depth not in (8, 16) or channels not in (1, 2, 3, 4):
            raise ValueError(f"PNG: {channels} channels at {bit_depth} bits is not written")
        self.fh, self.width, self.height = fh, width, height
        self.channels, self.bit_depth = channels, bit_depth
        self.row_bytes = width * channels * bit_depth // 8
        self.rows = 0
        self._comp = zlib.compressobj(6)
        self._prev = np.zeros(self.row_bytes, np.uint8)
        self._pending: list[bytes] = []
        self._size = 0
        color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
        fh.write(_PNG_SIGNATURE)
        _write_chunk(fh, b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                              color_type, 0, 0, 0))
        if icc_profile:
            _write_chunk(fh, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
        if exif:
            _write_chunk(fh, b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
        if software:
            _write_chunk(fh, b"tEXt", b"Software\x00" + software.encode("latin-1", "replace"))

    def write(self, rows: np.ndarray) -> None:
        """Append rows ``(n, W, C)`` (uint8 for 8 bits, uint16 for 16 bits)."""
        n = rows.shape[0]
        if rows.shape[1:] != (self.width, self.channels) or self.rows + n > self.height:
            raise ValueError(f"PNG rows {rows.shape} do not fit a {self.width}x{self.height}"
                             f"x{self.channels} image at row {self.rows}")
        dtype = ">u2" if self.bit_depth == 16 else np.uint8
        step = max(1, _CHUNK_ELEMENTS // (self.row_bytes + 1))  # ~1 MiB of filtered rows
        for r in range(0, n, step):
            raw = np.ascontiguousarray(rows[r : r + step], dtype=dtype).view(np.uint8)
            raw = raw.reshape(-1, self.row_bytes)
            block = np.empty((raw.shape[0], self.row_bytes + 1), np.uint8)
            block[:, 0] = 2  # filter type "Up"
            # uint8 arithmetic wraps modulo 256, as the filter requires
            np.subtract(raw[0], self._prev, out=block[0, 1:])
            np.subtract(raw[1:], raw[:-1], out=block[1:, 1:])
            self._prev = raw[-1].copy()
            self._emit(self._comp.compress(block))
        self.rows += n

    def _emit(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._size += len(piece)
        if self._size >= _IDAT_BYTES:
            self._flush_idat()

    def _flush_idat(self) -> None:
        if self._pending:
            _write_chunk(self.fh, b"IDAT", b"".join(self._pending))
        self._pending, self._size = [], 0

    def close(self) -> None:
        """Finish the zlib stream and write ``IEND``; every row must have been written."""
        if self.rows != self.height:
            raise ValueError(f"PNG: {self.rows} of {self.height} rows written")
        self._emit(self._comp.flush())
        self._flush_idat()
        _write_chunk(self.fh, b"IEND", b"")


def write_png16(
    fh: BinaryIO, arr: np.ndarray, *, icc_profile: bytes | None = None,
    exif: bytes | None = None, software: str | None = None,
) -> None:
    """Write a 16-bit PNG of uint16 ``(H, W, C)`` (C = 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA) to the binary file ``fh``, streaming (memory: a few rows, whatever ``H``);
    see :class:`PngWriter`."""
    h, w, c = arr.shape
    writer = PngWriter(fh, width=w, height=h, channels=c, bit_depth=16,
                       icc_profile=icc_profile, exif=exif, software=software)
    writer.write(arr)
    writer.close()


class TiffWriter:
    """A streaming baseline TIFF encoder (uncompressed, one strip, as Pillow writes
    TIFFs by default): the IFD, built by Pillow's own tag writer with the tags Pillow's
    encoder sets, comes first; rows then go straight to the file in order.

    8 bits: gray, gray+alpha, RGB, RGBA; 16 bits: gray (what :func:`write_image` writes
    as 16-bit TIFF). Metadata: ICC profile, the EXIF block's tags, the Software tag.
    """

    _MODES = {(8, 1): "L", (8, 2): "LA", (8, 3): "RGB", (8, 4): "RGBA", (16, 1): "I;16"}

    def __init__(self, fh: BinaryIO, *, width: int, height: int, channels: int,
                 bit_depth: int = 8, icc_profile: bytes | None = None,
                 exif: bytes | None = None, software: str | None = None) -> None:
        from PIL import TiffImagePlugin, TiffTags

        tiff = TiffImagePlugin

        mode = self._MODES.get((bit_depth, channels))
        if mode is None:
            raise ValueError(f"TIFF: {channels} channels at {bit_depth} bits is not streamed")
        _rawmode, prefix, photo, sample_format, bits, extra = tiff.SAVE_INFO[mode]
        self.fh, self.width, self.height, self.channels = fh, width, height, channels
        self.dtype = np.dtype("<u2") if bit_depth == 16 else np.dtype(np.uint8)
        self.rows = 0
        nbytes = width * height * channels * self.dtype.itemsize
        if nbytes >= 2**32:
            raise ValueError("TIFF: image data over 4 GiB needs BigTIFF")
        ifd = tiff.ImageFileDirectory_v2(prefix=prefix)
        ifd[tiff.PLANAR_CONFIGURATION] = 1
        ifd[tiff.IMAGEWIDTH], ifd[tiff.IMAGELENGTH] = width, height
        if exif:
            info = Image.Exif()
            info.load(exif)
            for key in info:
                ifd[key] = info.get_ifd(key) if key in TiffTags.TAGS_V2_GROUPS else info[key]
        if software:
            ifd[_TIFF_SOFTWARE] = software
        if icc_profile:
            ifd[tiff.ICCPROFILE] = icc_profile
        ifd[tiff.BITSPERSAMPLE] = bits
        if len(bits) != 1:
            ifd[tiff.SAMPLESPERPIXEL] = len(bits)
        if extra is not None:
            ifd[tiff.EXTRASAMPLES] = extra
        if sample_format != 1:
            ifd[tiff.SAMPLEFORMAT] = sample_format
        ifd[tiff.PHOTOMETRIC_INTERPRETATION] = photo
        ifd[tiff.ROWSPERSTRIP] = height
        ifd.tagtype[tiff.STRIPBYTECOUNTS] = TiffTags.LONG
        ifd[tiff.STRIPBYTECOUNTS] = (nbytes,)
        ifd[tiff.STRIPOFFSETS] = (0,)  # the IFD writer points it past the IFD
        ifd[tiff.COMPRESSION] = 1
        ifd.save(fh)

    def write(self, rows: np.ndarray) -> None:
        """Append rows ``(n, W, C)`` (uint8 for 8 bits, uint16 for 16 bits)."""
        if rows.shape[1:] != (self.width, self.channels) or self.rows + len(rows) > self.height:
            raise ValueError(f"TIFF rows {rows.shape} do not fit a {self.width}x"
                             f"{self.height}x{self.channels} image at row {self.rows}")
        self.fh.write(np.ascontiguousarray(rows, dtype=self.dtype).data)
        self.rows += len(rows)

    def close(self) -> None:
        if self.rows != self.height:
            raise ValueError(f"TIFF: {self.rows} of {self.height} rows written")


_STREAM_WRITERS: dict[str, type[PngWriter] | type[TiffWriter]] = {
    "PNG": PngWriter, "TIFF": TiffWriter}


def stream_format(path: str | os.PathLike[str], *, bit_depth: int, channels: int,
                  format: str | None = None) -> str | None:  # noqa: A002 (Pillow's name)
    """The format :func:`write_image_rows` writes ``path`` in (``PNG``, ``TIFF``), or
    None when that format cannot be written row by row (JPEG, WebP, BMP; 16-bit TIFF
    with colour, which :func:`write_image` writes as 8 bits)."""
    fmt = _format_for(Path(path), format)
    if fmt == "PNG" and bit_depth in (8, 16) and channels in (1, 2, 3, 4):
        return fmt
    if fmt == "TIFF" and (bit_depth, channels) in TiffWriter._MODES:
        return fmt
    return None


def write_image_rows(
    path: str | os.PathLike[str],
    blocks: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    channels: int,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    software: str | None = None,
    format: str | None = None,  # noqa: A002 (Pillow's name)
) -> Path:
    """Write an image from row blocks ``(n, W, C)`` (uint8, or uint16 for 16 bits; top
    to bottom, ``height`` rows in all) as they arrive, atomically (temporary file, then
    rename): the whole image is never held. PNG and TIFF (see :func:`stream_format`);
    the pixels decode equal to :func:`write_image` of the same array, with the same
    metadata (ICC profile, EXIF, the ``software`` marker)."""
    path = Path(path)
    fmt = stream_format(path, bit_depth=bit_depth, channels=channels, format=format)
    if fmt is None:
        raise ImageWriteError(path, f"{channels} channels at {bit_depth} bits cannot be "
                                    "written row by row in this format")
    def encode(call: Any, *args: Any, **kwargs: Any) -> Any:  # the encoder's errors, named
        try:
            return call(*args, **kwargs)
        except ValueError as exc:
            raise ImageWriteError(path, f"cannot encode as {fmt}: {exc}") from exc

    try:  # an error of whatever produces ``blocks`` propagates as it is
        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            writer = encode(
                _STREAM_WRITERS[fmt], fh, width=width, height=height, channels=channels,
                bit_depth=bit_depth, icc_profile=icc_profile, exif=exif, software=software)
            for block in blocks:
                encode(writer.write, block)
            encode(writer.close)
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from exc
    return path


def encode_png16(
    arr: np.ndarray, *, icc_profile: bytes | None = None, exif: bytes | None = None
) -> bytes:
    """The bytes of a 16-bit PNG of uint16 ``(H, W, C)``: see :func:`write_png16`."""
    buf = io.BytesIO()
    write_png16(buf, arr, icc_profile=icc_profile, exif=exif)
    return buf.getvalue()


def _pil_image(arr: np.ndarray) -> Image.Image:
    """A Pillow image of uint8 / uint16 ``(H, W, C)`` (uint16: gray only, as ``I;16``).

    A contiguous array is copied once, into Pillow's own buffer."""
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _save_options(
    fmt: str, icc: bytes | None, exif: bytes | None, quality: int, software: str | None = None
) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        if icc:
            opts["icc_profile"] = icc
        if exif:
            opts["exif"] = exif
    if software:  # the marker that says "made by attnsr" (see is_attnsr_output)
        opts.update(_marker_options(fmt, software))
    if fmt == "JPEG":
        opts.update(quality=quality, subsampling=0)  # 4:4:4: no chroma blur on SR output
    elif fmt == "WEBP":
        opts.update(quality=quality, lossless=quality >= 100)
    return opts


def _marker_options(fmt: str, software: str) -> dict[str, Any]:
    """Pillow save options that store ``software`` where each format keeps it."""
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", software)
        return {"pnginfo": info}
    if fmt == "JPEG":
        return {"comment": software.encode("utf-8")}
    if fmt == "TIFF":
        return {"tiffinfo": {_TIFF_SOFTWARE: software}}
    if fmt == "WEBP":
        return {"xmp": _xmp(software)}
    return {}


def _xmp(software: str) -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
            f'1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/'
            f'xap/1.0/" xmp:CreatorTool="{software}"/></rdf:RDF></x:xmpmeta>').encode()


def software_tag(path: str | os.PathLike[str]) -> str:
    """The software marker stored in an image file's metadata ('' if none or unreadable):
    PNG ``Software`` text, JPEG comment, TIFF Software tag, WebP XMP CreatorTool; a
    video's ``comment`` tag (:func:`attnsr.data.video_io.software_tag`)."""
    if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        try:
            from attnsr.data.video_io import software_tag as video_tag  # PyAV: optional
        except ImportError:
            return ""
        return video_tag(path)
    try:
        with Image.open(path) as img:
            info = img.info
            if img.format == "TIFF":
                return str(img.tag_v2.get(_TIFF_SOFTWARE, ""))
            raw = info.get("Software") or info.get("comment") or info.get("xmp") or ""
    except (OSError, ValueError, SyntaxError):
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if "CreatorTool=" in text:
        text = text.split('CreatorTool="', 1)[1].split('"', 1)[0]
    return text


def is_attnsr_output(path: str | os.PathLike[str]) -> bool:
    """True if the file carries attnsr's output marker (:data:`MARKER_PREFIX`)."""
    return software_tag(path).startswith(MARKER_PREFIX)


def write_image(
    path: str | os.PathLike[str],
    pixels: Any,
    *,
    alpha: Any = None,
    bit_depth: int = 8,
    mode_hint: str | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    format: str | None = None,  # noqa: A002 (Pillow's name)
    software: str | None = None,
) -> Path:
    """Write an image atomically; returns the path written.

    Args:
        pixels: numpy ``(H, W)`` / ``(H, W, C)`` (C = 1..4; float in [0, 1], uint8 or
            uint16) or a torch tensor ``([1,] C, H, W)`` in [0, 1]. A 2nd/4th channel is alpha.
        alpha: optional ``(H, W)`` alpha in [0, 1] (dropped for JPEG).
        bit_depth: 8, or 16 (PNG: gray, gray+alpha, RGB, RGBA; TIFF: gray without alpha;
            other formats fall back to 8 bits with a warning).
        mode_hint: the source's mode; a grayscale mode makes 3-channel pixels gray (luma).
        icc_profile, exif: embedded where the format supports them (PNG, JPEG, WebP, TIFF).
        quality: JPEG/WebP quality (WebP 100 = lossless).
        format: Pillow format name; default from the extension.
        software: a marker stored in the file's metadata (PNG text, JPEG comment, TIFF
            Software tag, WebP XMP); ``attnsr upscale`` writes ``attnsr <version> ...`` so
            that re-runs never take their own outputs as inputs.

    Memory: integer ``pixels`` in the output's depth (uint8; uint16 for 16 bits) with
    alpha where it is written are not copied; other inputs are converted a few rows at a
    time into one integer array. Pillow formats then copy it once into Pillow's buffer;
    16-bit PNGs stream from it.
    """
    path = Path(path)
    fmt = _format_for(path, format)
    try:
        planes = _planes(pixels, alpha, mode_hint, keep_alpha=fmt != "JPEG")
        png16 = bit_depth == 16 and fmt == "PNG"
        tiff16 = (bit_depth == 16 and fmt == "TIFF" and planes.color_channels == 1
                  and planes.alpha is None)
        arr = _prepare(planes, np.uint16 if png16 or tiff16 else np.uint8)
    except ValueError as exc:
        raise ImageWriteError(path, str(exc)) from exc
    if bit_depth == 16 and not (png16 or tiff16):
        log.warning("%s: 16-bit output is not supported for this format; writing 8 bits", path)
    del planes  # only ``arr`` is needed from here (a torch input's copy can go)
    try:
        with atomic_write(path) as tmp:
            if png16:
                with open(tmp, "wb") as fh:
                    write_png16(fh, arr, icc_profile=icc_profile, exif=exif,
                                software=software)
            else:
                img = _pil_image(arr)
                del arr  # Pillow holds its own copy: free a converted array before encoding
                img.save(tmp, format=fmt,
                         **_save_options(fmt, icc_profile, exif, quality, software))
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageWriteError(path, f"cannot encode as {fmt}: {exc}") from exc
    return path
