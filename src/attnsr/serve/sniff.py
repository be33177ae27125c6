"""What an upload is, from its content: the format Pillow recognises in its bytes (the
client's file name and content type are ignored) and its size from the header, checked
against the pixel limit before anything is decoded.

The full decode happens later, in a worker, through :func:`attnsr.data.io.read_image`
with the same limit (the CLI's decompression-bomb guard); this early look lets a request
be refused at once (413/415) instead of taking a place in the queue.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from attnsr.serve.errors import ApiError

# Pillow format -> (media type, extension) of the formats attnsr.data.io reads
FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "MPO": ("image/jpeg", ".jpg"),  # what Pillow calls many phone cameras' JPEGs
    "WEBP": ("image/webp", ".webp"),
    "TIFF": ("image/tiff", ".tif"),
    "BMP": ("image/bmp", ".bmp"),
}


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    """An upload's format (Pillow's name), media type, extension and size in pixels."""

    format: str
    media_type: str
    extension: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def too_many_pixels(filename: str, width: int | None, height: int | None,
                    limit: int | None) -> ApiError:
    size = f"{width}x{height} = {width * height} pixels" if width and height else \
        "larger than Pillow opens"
    limit_text = f"the server's limit of {limit} pixels" if limit else "what it can open"
    return ApiError(413, "too_many_pixels", f"{filename}: image is {size}, above "
                    f"{limit_text}")


def sniff(path: Path, filename: str, max_pixels: int | None) -> ImageInfo:
    """The :class:`ImageInfo` of the file at ``path`` (a private copy of an upload named
    ``filename`` by the client), from its header only.

    Raises:
        ApiError: 400 empty, 415 not an image or an unsupported format, 413 more pixels
            than ``max_pixels`` (None: no limit; Pillow's own bomb check still applies
            above ``2 * Image.MAX_IMAGE_PIXELS``).
    """
    if path.stat().st_size == 0:
        raise ApiError(400, "empty_file", f"{filename}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt, (width, height) = img.format or "", img.size
    except Image.DecompressionBombError:
        raise too_many_pixels(filename, None, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(415, "not_an_image", f"{filename}: not an image, or a format attnsr "
                       "does not read (use PNG, JPEG, WebP, TIFF or BMP)") from None
    if fmt not in FORMATS:
        raise ApiError(415, "unsupported_format", f"{filename}: {fmt} images are not "
                       "supported (use PNG, JPEG, WebP, TIFF or BMP)")
    if width <= 0 or height <= 0:
        raise ApiError(422, "unreadable_image", f"{filename}: invalid size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise too_many_pixels(filename, width, height, max_pixels)
    media_type, ext = FORMATS[fmt]
    return ImageInfo(format=fmt, media_type=media_type, extension=ext, width=width,
                     height=height)
