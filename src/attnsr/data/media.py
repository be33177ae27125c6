"""What kind of file an input is (still image, animated image, video) and the settings
of video outputs, decided without decoding anything.

This module is light on purpose (Pillow only): the CLI imports it at start-up. Videos
are read and written by :mod:`attnsr.data.video_io` (PyAV, the ``video`` extra),
animated images by :mod:`attnsr.data.animated`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

# Files routed to the video path by their extension.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".ogv", ".3gp", ".nut")
# Image files only the animated-image path reads (a GIF, even a still one, is written
# back as a GIF; .apng is an animated PNG by its own name).
ANIMATED_EXTENSIONS = (".gif", ".apng")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + ANIMATED_EXTENSIONS
# Image formats that may hold several frames: checked for animation when opened.
_MULTI_FRAME_EXTENSIONS = (".png", ".webp", ".tif", ".tiff")
# --format values that apply to videos (image formats apply to images).
VIDEO_FORMATS = {"mp4": ".mp4", "mkv": ".mkv", "mov": ".mov", "webm": ".webm", "avi": ".avi"}
# --format values under which animated images stay animated.
ANIMATED_FORMATS = {"png": ".png", "webp": ".webp", "tiff": ".tif", "tif": ".tif",
                    "gif": ".gif"}

MediaKind = Literal["image", "animated", "video"]


@dataclass(frozen=True, kw_only=True)
class MediaOptions:
    """Encoder settings of video outputs (``attnsr upscale --codec/--crf/--pix-fmt/
    --resume``).

    Attributes:
        codec: FFmpeg encoder name (``libx264``, ``libx265``, ``libvpx-vp9``, ``ffv1``,
            ``png`` ...); None: the first of H.264, HEVC, VP9, AV1, MPEG-4 that the
            output container holds and the installed FFmpeg has.
        crf: constant-quality value of codecs that have one (x264/x265/VP9/AV1);
            None: a near-transparent default per codec (x264: 18).
        pix_fmt: encoder pixel format; None: the input's, or the closest the codec
            supports (same bit depth, chroma subsampling and alpha).
        resume: continue an interrupted job from its last completed segment.
    """

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    resume: bool = False


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """A video by its extension (:data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _frame_count(path: Path) -> int:
    """Frames in an image file from its header (1 when unreadable: the still-image path
    then reports the problem)."""
    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # Pillow raises many types on broken files
        return 1


def media_kind(path: str | os.PathLike[str]) -> MediaKind:
    """``video`` (by extension), ``animated`` (a GIF or APNG, or a PNG/WebP/TIFF with
    more than one frame or page) or ``image``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in ANIMATED_EXTENSIONS:
        return "animated"
    if ext in _MULTI_FRAME_EXTENSIONS and path.is_file() and _frame_count(path) > 1:
        return "animated"
    return "image"


def media_extension(src: Path, fmt: str) -> str | None:
    """The output extension of a video or animated-image input under ``--format fmt``
    (None for other inputs): a video keeps its container unless ``fmt`` names one
    (:data:`VIDEO_FORMATS`); an animated image keeps its format unless ``fmt`` names an
    image format (a still one, JPEG or BMP, only takes single-frame files)."""
    ext = src.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return VIDEO_FORMATS.get(fmt, ext)
    if ext in ANIMATED_EXTENSIONS:  # "same" or a video container: the format it has
        return ANIMATED_FORMATS.get(fmt) or {"jpg": ".jpg", "jpeg": ".jpg"}.get(fmt) or ext
    return None
