"""Animated images (GIF, APNG, animated WebP) and multi-page TIFF through Pillow.

Frames are read fully composited (Pillow applies each format's disposal and blending),
so every frame is a whole picture; they are written back as whole frames with their
own durations, the loop count and transparency. GIF output is quantised per frame to
an adaptive palette (median cut, 255 colours plus one transparent index: alpha below
half is transparent, GIF has no partial alpha). TIFF pages keep their mode (16-bit gray
stays 16-bit) and compression.

Memory: frames are read one at a time, but Pillow's GIF and APNG writers hold every
output frame until the file is written (they compare neighbouring frames); WebP and
TIFF writers take them one by one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence, PngImagePlugin, UnidentifiedImageError

from attnsr.data.io import _marker_options, resolve_max_pixels, write_image
from attnsr.errors import ImageReadError, ImageWriteError
from attnsr.fs import atomic_write

_ANIMATED = ("GIF", "PNG", "WEBP")
_TIFF_LOSSLESS = ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits")
_GIF_TRANSPARENT = 255  # palette index of transparent pixels in GIF output


@dataclass(frozen=True, kw_only=True)
class AnimatedInfo:
    """What an animated or multi-page file keeps when written back.

    Attributes:
        format: Pillow's format name (``GIF``, ``PNG``, ``WEBP``, ``TIFF``).
        n_frames: frames or pages.
        alpha: some frame has transparency (GIF/APNG/WebP frames then are all RGBA).
        loop: loop count (0: forever), None: play once (a GIF without the loop block).
        icc_profile: of the first frame, or None.
        comment: a GIF's comment, or None.
        compression: a TIFF's (lossless) compression, or None.
        durations: each frame's duration in milliseconds (None: not given).
    """

    format: str
    n_frames: int
    durations: tuple[float | None, ...] = ()
    alpha: bool = False
    loop: int | None = None
    icc_profile: bytes | None = None
    comment: bytes | None = None
    compression: str | None = None


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a file")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image or unsupported format") from None
    except Exception as exc:  # Pillow raises many types on broken headers
        raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc


def _scan(img: Image.Image) -> tuple[tuple[float | None, ...], bool]:
    """(durations, any frame with transparency): seeks through the file."""
    durations, alpha = [], False
    for frame in ImageSequence.Iterator(img):
        frame.load()  # WebP sets a frame's duration when it is decoded
        d = frame.info.get("duration")
        durations.append(float(d) if d is not None else None)
        alpha = alpha or (img.format != "TIFF" and frame.has_transparency_data)
    return tuple(durations), alpha


def probe(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> AnimatedInfo:
    """The :class:`AnimatedInfo` of ``path``; checks the canvas against the pixel limit."""
    path = Path(path)
    limit = resolve_max_pixels(max_pixels)
    with _open(path) as img:
        w, h = img.size
        if limit is not None and w * h > limit:
            raise ImageReadError(path, f"image is {w}x{h} = {w * h} pixels, above the "
                                       f"limit of {limit} (set --max-pixels)")
        try:
            durations, alpha = _scan(img)
            img.seek(0)
        except Exception as exc:
            raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc
        comp = img.info.get("compression")
        return AnimatedInfo(
            format=img.format or "PNG", n_frames=len(durations), durations=durations,
            alpha=alpha, loop=img.info.get("loop"), icc_profile=img.info.get("icc_profile"),
            comment=img.info.get("comment") or None,
            compression=comp if comp in _TIFF_LOSSLESS else None)


def _frame_array(frame: Image.Image, info: AnimatedInfo) -> np.ndarray:
    """A composited frame as (H, W, C): RGB(A) for animations, the page's own gray /
    16-bit gray / RGB(A) for TIFF pages."""
    mode = frame.mode
    if info.format != "TIFF":
        return np.asarray(frame.convert("RGBA" if info.alpha else "RGB"))
    if mode.startswith("I;16") or mode == "I":
        return np.clip(np.asarray(frame).astype(np.int64), 0, 65535).astype(np.uint16)[..., None]
    if mode not in ("L", "LA", "RGB", "RGBA"):
        frame = frame.convert("RGBA" if frame.has_transparency_data else "RGB")
    arr = np.asarray(frame)
    return arr[..., None] if arr.ndim == 2 else arr


def read_frames(path: str | os.PathLike[str], info: AnimatedInfo) -> Iterator[np.ndarray]:
    """The frames of ``path`` one at a time, composited: (H, W, C) uint8 (C = 1..4,
    alpha last) or uint16 gray (16-bit TIFF pages)."""
    path = Path(path)
    with _open(path) as img:
        try:
            for frame in ImageSequence.Iterator(img):
                yield _frame_array(frame, info)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc


# --------------------------------------------------------------------------- writing
def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _gif_frame(arr: np.ndarray) -> Image.Image:
    """An RGB(A) frame as a palette image: 255 adaptive colours (256 without alpha) and
    index 255 for alpha below half."""
    rgb = Image.fromarray(np.ascontiguousarray(arr[..., :3]) if arr.shape[2] >= 3
                          else np.repeat(arr[..., :1], 3, axis=2))
    if arr.shape[2] not in (2, 4):
        return rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    pal = rgb.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    idx = np.asarray(pal).copy()
    idx[arr[..., -1] < 128] = _GIF_TRANSPARENT
    out = Image.fromarray(idx, "P")
    colors = (pal.getpalette() or [])[: 3 * 255]
    out.putpalette(colors + [0] * (3 * 256 - len(colors)))
    out.info["transparency"] = _GIF_TRANSPARENT
    return out


def _comment(software: str | None, own: bytes | None) -> bytes | None:
    parts = [p for p in (software.encode() if software else None, own) if p]
    return b"; ".join(parts) or None


def _save_options(fmt: str, info: AnimatedInfo, quality: int, software: str | None
                  ) -> dict[str, Any]:
    """Pillow save options of an animation/page stack in ``fmt``."""
    opts: dict[str, Any] = {"save_all": True}
    if fmt in _ANIMATED and info.durations and None not in info.durations:
        opts["duration"] = [max(0, round(d)) for d in info.durations]  # type: ignore[arg-type]
    if fmt in _ANIMATED:
        opts["loop"] = 0 if info.loop is None and fmt != "GIF" else info.loop
        if opts["loop"] is None:
            del opts["loop"]  # a GIF without the loop block plays once
    if fmt == "GIF":
        opts.update(disposal=2 if info.alpha else 1, optimize=False)
        comment = _comment(software, info.comment)
        if comment:
            opts["comment"] = comment
    else:
        opts.update(_marker_options(fmt, software) if software else {})
        if info.icc_profile:
            opts["icc_profile"] = info.icc_profile
    if fmt == "PNG":
        opts.update(disposal=PngImagePlugin.Disposal.OP_NONE,
                    blend=PngImagePlugin.Blend.OP_SOURCE)
    elif fmt == "WEBP":
        opts.update(quality=quality, lossless=quality >= 100)
    elif fmt == "TIFF" and info.compression:
        opts["compression"] = info.compression
    return opts


def write_animated(
    path: str | os.PathLike[str], frames: Iterable[np.ndarray], info: AnimatedInfo, *,
    quality: int = 95, software: str | None = None,
) -> Path:
    """Write ``frames`` ((H, W, C) arrays, as :func:`read_frames` gives them, upscaled)
    as an animation (GIF, APNG, WebP) or a multi-page TIFF, by ``path``'s extension,
    atomically, with ``info``'s durations, loop count and transparency. A still format
    (JPEG, BMP) takes a single frame."""
    path = Path(path)
    registered = Image.registered_extensions()
    ext = ".png" if path.suffix.lower() == ".apng" else path.suffix.lower()
    fmt = registered.get(ext)
    if fmt is None:
        raise ImageWriteError(path, f"unknown image extension {path.suffix!r}")
    if fmt not in (*_ANIMATED, "TIFF"):
        return _write_still(path, frames, info, quality, software)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ImageWriteError(path, "no frames to write")
    convert = _gif_frame if fmt == "GIF" else _pil
    rest: Iterable[Image.Image] = (convert(f) for f in it)  # converted as Pillow asks
    if fmt == "PNG":
        rest = list(rest)  # Pillow's APNG writer walks the frames twice
    try:
        with atomic_write(path) as tmp:
            convert(first).save(tmp, format=fmt, append_images=rest,
                                **_save_options(fmt, info, quality, software))
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageWriteError(path, f"cannot encode as {fmt}: {exc}") from exc
    return path


def _write_still(path: Path, frames: Iterable[np.ndarray], info: AnimatedInfo,
                 quality: int, software: str | None) -> Path:
    if info.n_frames > 1:
        raise ImageWriteError(path, f"{path.suffix} holds one frame and the input has "
                                    f"{info.n_frames}: use --format png, webp or tiff")
    first = next(iter(frames))
    return write_image(path, first, bit_depth=16 if first.dtype == np.uint16 else 8,
                       icc_profile=info.icc_profile, quality=quality, software=software)
