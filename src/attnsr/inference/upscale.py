"""``attnsr.upscale``: upscale an image (path, PIL, numpy or torch) with a model, tiled.

What comes back is the kind that went in:

=========================  ==========================================================
input                      output
=========================  ==========================================================
path (str / Path)          ``PIL.Image``; a 16-bit colour file gives a numpy uint16
                           ``(H, W, C)`` array instead (PIL has no 16-bit RGB mode,
                           and the data must not lose its depth)
``PIL.Image``              ``PIL.Image`` of the same mode (``P`` -> ``RGB``/``RGBA``,
                           ``1`` -> ``L``), ICC profile and EXIF kept in ``info``
numpy ``(H, W[, C])``      same dtype (uint8, uint16, float in [0, 1]) and layout;
                           C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
torch ``(C, H, W)`` or     same shape convention, dtype and device, float in [0, 1]
``(B, C, H, W)``
=========================  ==========================================================

Fidelity rules: grayscale runs through an RGB model as three equal channels and is
averaged back to one plane; the alpha plane is upscaled by the model the same way
(``alpha_mode="model"``, the default, as Real-ESRGAN: sharper edges) or by MATLAB
bicubic (``"bicubic"``: exact on flat opaque/transparent regions, no ringing);
16-bit images are computed in float and written back as 16 bits.

The model is named as everywhere else (:func:`attnsr.resolver.resolve`: bundled weights,
a checkpoint, an ``.onnx`` file, the default for the scale) and runs through the one
:class:`~attnsr.runner.Runner` contract (device, precision with its fp32 fallback, memory
order); this module adds tiling, colour/alpha/bit-depth handling and file I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnsr import resolver
from attnsr.data.io import (
    LoadedImage,
    read_image,
    stream_format,
    write_image,
    write_image_rows,
)
from attnsr.data.media import MediaOptions, media_kind
from attnsr.errors import ConfigError
from attnsr.inference.memory import auto_tile_size, default_budget, runner_bytes_per_pixel
from attnsr.inference.tiling import (
    ProgressCb,
    array_sink,
    default_overlap,
    plan_tiles,
    tiled_forward,
    tiled_rows_quantized,
)
from attnsr.runner import Runner

T = TypeVar("T")
_END: Any = object()

log = logging.getLogger(__name__)

ALPHA_MODES = ("model", "bicubic")


@dataclass(frozen=True, kw_only=True)
class _Plane:
    """One tiled model run: ``lr`` (1, C_in, H, W) by ``runner`` into ``channels`` of
    the output (averaged to one channel if ``to_gray``)."""

    lr: Tensor
    channels: slice
    to_gray: bool
    runner: Runner
    overlap: int


class Upscaler:
    """A loaded model plus tiling and precision settings, reusable across images.

    Args:
        model: anything :func:`attnsr.resolver.resolve` takes (a runner, a model, a
            pretrained name, a checkpoint or ``.onnx`` path); None: the bundled default.
        scale: upscaling factor; None: the model's (4 when ``model`` is None).
        tile: ``"auto"`` (from free memory), 0 (whole image) or a side in LR pixels.
        overlap: LR pixels shared by neighbouring tiles; None: 2x the receptive field
            (a local model: exact, a hard cut), 4x with global ops (cross-faded), at
            most a quarter of the tile.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16`` (see the module docstring).
        alpha_mode: ``model`` or ``bicubic``.
        budget: bytes for activations + strip buffer with ``tile="auto"``; None: default.
        backend: ``auto``, ``torch`` or ``onnxruntime``.
        denoise: 0..1 between the clean and the real-world bundled weights (None: the
            model as named).
        tta: the x8 self-ensemble quality mode (flips/transposes averaged; 8x the time).
        fast: the int8 graph shipped with the bundled weights (onnxruntime, CPU; at most
            0.1 dB below fp32 on Set5/Set14, see ``docs/deployment.md``).

    >>> up = Upscaler("attnsr-x4")
    >>> up.upscale_file("in.png", "out.png")
    """

    def __init__(
        self, model: Any = None, *, scale: int | None = None, tile: int | str = "auto",
        overlap: int | None = None, device: str | torch.device = "auto",
        precision: str = "auto", alpha_mode: str = "model", budget: int | None = None,
        backend: str = "auto", denoise: float | None = None, tta: bool = False,
        fast: bool = False,
    ) -> None:
        if alpha_mode not in ALPHA_MODES:
            raise ConfigError(f"alpha mode {alpha_mode!r}: use model or bicubic")
        if not (tile == "auto" or (isinstance(tile, int) and tile >= 0)):
            raise ConfigError(f"tile {tile!r}: use auto, 0 (no tiling) or a size in pixels")
        self.runner = resolver.resolve(model, scale=scale, backend=backend,
                                       device=resolver.resolve_device(device),
                                       precision=precision, denoise=denoise, tta=tta,
                                       fast=fast)
        self.device = self.runner.device
        self.scale = self.runner.scale
        self.precision = self.runner.precision
        self.tile, self.overlap, self.alpha_mode = tile, overlap, alpha_mode
        self.budget = budget
        self._bytes_per_px: float | None = None
        self._bicubic: Runner | None = None
        least = self.min_exact_tile()
        if isinstance(self.tile, int) and 0 < self.tile < least and overlap is None:
            log.warning("--tile %d is smaller than the %d px at which tiles equal the "
                        "whole-image result for this model (receptive field %d px); "
                        "using --tile %d", self.tile, least,
                        self.runner.traits.receptive_field, least)
            self.tile = least

    @property
    def descriptor(self) -> Runner:
        """The runner (its older name)."""
        return self.runner

    def min_exact_tile(self) -> int:
        """The smallest tile side at which tiled output equals whole-image output for a
        local model: below it the default overlap (2x the receptive field, see
        :func:`~attnsr.inference.tiling.default_overlap`) is cut to a quarter of the
        tile, the dropped border no longer covers the receptive field, and the many small
        tiles repeat most of the work."""
        return max(4 * default_overlap(self.runner), self.runner.traits.min_size)
    # -- settings per image
    def tile_size(self, height: int, width: int, held_bytes: int = 0) -> int:
        """The tile side for an ``height x width`` LR image (0: one tile). With
        ``tile="auto"`` the tile work gets the budget minus ``held_bytes`` (the image
        buffers the caller holds), at least an eighth of it."""
        if self.tile != "auto":
            return int(self.tile)
        if self._bytes_per_px is None:
            self._bytes_per_px = runner_bytes_per_pixel(self.runner)
        total = self.budget if self.budget is not None else default_budget(self.device)
        budget = max(total - held_bytes, total // 8)
        tile = auto_tile_size(self._bytes_per_px, width=width, scale=self.scale,
                              out_channels=self.runner.out_channels, budget=budget,
                              multiple=self.runner.multiple_of)
        # never below the size at which tiles equal the whole image (a local model's
        # exactness is worth more than the last MiB of the budget)
        tile = max(tile, self.min_exact_tile())
        log.debug("auto tile %d (%.0f bytes/px, budget %d MiB)", tile, self._bytes_per_px,
                  budget >> 20)
        return 0 if tile >= max(height, width) else tile

    def _bicubic_runner(self) -> Runner:
        if self._bicubic is None:
            self._bicubic = resolver.resolve("bicubic", scale=self.scale, device=self.device,
                                             precision="fp32")
        return self._bicubic

    def _planes(self, color: Tensor, alpha: Tensor | None, tile: int) -> list[_Plane]:
        """The model runs for ``color`` (1, 1|3, H, W) and ``alpha`` (1, 1, H, W)."""
        h, w = color.shape[-2:]
        n_in, ncol = self.runner.in_channels, color.shape[1]
        ov = self.overlap if self.overlap is not None else default_overlap(self.runner, tile)
        if n_in == ncol:
            planes = [_Plane(lr=color, channels=slice(0, ncol), to_gray=False,
                             runner=self.runner, overlap=ov)]
        else:  # gray through an RGB model (mean back), or colour through a 1-channel model
            planes = [_Plane(lr=color[:, c : c + 1].expand(1, n_in, h, w),
                             channels=slice(c, c + 1), to_gray=n_in > 1, runner=self.runner,
                             overlap=ov) for c in range(ncol)]
        if alpha is not None:
            a = slice(ncol, ncol + 1)
            if self.alpha_mode == "bicubic":
                planes.append(_Plane(lr=alpha, channels=a, to_gray=False,
                                     runner=self._bicubic_runner(), overlap=16))
            else:
                planes.append(_Plane(lr=alpha.expand(1, n_in, h, w), channels=a,
                                     to_gray=n_in > 1, runner=self.runner, overlap=ov))
        return planes

    # -- entry points
    def upscale_hwc(
        self, pixels: np.ndarray, alpha: np.ndarray | None = None, *,
        dtype: Any = np.uint8, progress_cb: ProgressCb | None = None,
    ) -> np.ndarray:
        """Upscale float32 ``pixels`` ``(H, W, 1|3)`` in [0, 1] (and ``alpha`` ``(H, W)``)
        into a new ``(sH, sW, C)`` array of ``dtype``, alpha last. Integer dtypes are
        rounded. Memory: the output array plus one tile strip (never a full float copy
        of the output)."""
        h, w, c = pixels.shape
        s = self.scale
        out = np.empty((h * s, w * s, c + (alpha is not None)), dtype=dtype)
        held = self._held_bytes(h, w, c, out.shape[2], out.itemsize)
        with self.runner.host_threads():
            planes, tile, total = self._setup(pixels, alpha, held)
            offset = 0
            for plane in planes:
                n = self._num_tiles(plane, h, w, tile)
                tiled_forward(plane.runner, plane.lr, s, tile, plane.overlap,
                              _offset_cb(progress_cb, offset, total),
                              out=array_sink(out, plane.channels, to_gray=plane.to_gray))
                offset += n
        return out

    def iter_rows_hwc(
        self, pixels: np.ndarray, alpha: np.ndarray | None = None, *,
        dtype: Any = np.uint8, progress_cb: ProgressCb | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`upscale_hwc` as a stream: yields ``(first_row, block)`` top to bottom,
        ``block`` ``(n, sW, C)`` of ``dtype`` (alpha last), the same values the array
        would hold. A block is only valid until the next one is asked for (its buffer is
        reused). Memory: one tile, the float overlap band and one output strip, never the
        whole output nor a full-width float strip (what a streaming encoder needs, see
        :func:`attnsr.data.io.write_image_rows`)."""
        h, w, c = pixels.shape
        # the tile the array path would use: streaming lowers the peak by the output's
        # size (and the encoder's copy) instead of spending it on larger tiles
        held = self._held_bytes(h, w, c, c + (alpha is not None), np.dtype(dtype).itemsize)
        planes, tile, total = self._setup(pixels, alpha, held)
        done = [0]

        def tick(_i: int, _n: int) -> None:  # planes interleave: count tiles overall
            done[0] += 1
            if progress_cb is not None:
                progress_cb(done[0], total)

        nc = c + (alpha is not None)
        streams = [_plane_rows(p, self.scale, tile, tick, dtype) for p in planes]
        merged = streams[0] if len(streams) == 1 else \
            _merge_planes(streams, [p.channels for p in planes], nc, dtype)
        # each block is computed under the runner's thread setting, the caller's code
        # between blocks (the encoder) under its own
        yield from _stepwise(self.runner.host_threads, merged)

    def _held_bytes(self, h: int, w: int, c: int, channels: int, itemsize: int) -> int:
        """Image buffers held beside the tile work on CPU: the float input (``c`` colour
        planes and alpha) and the ``(sH, sW, channels)`` output array."""
        if self.device.type != "cpu":
            return 0
        return h * w * self.scale**2 * channels * itemsize + h * w * (c + 1) * 4

    def _setup(self, pixels: np.ndarray, alpha: np.ndarray | None, held: int
               ) -> tuple[list[_Plane], int, int]:
        """(model runs, tile side, total tiles) for float32 ``pixels`` ``(H, W, 1|3)`` and
        ``alpha`` ``(H, W)`` or None; ``held``: bytes of image buffers the caller holds."""
        h, w, _ = pixels.shape
        color = torch.from_numpy(np.asarray(pixels, np.float32)).permute(2, 0, 1)[None]
        a = None if alpha is None else torch.from_numpy(np.asarray(alpha, np.float32))[None, None]
        tile = self.tile_size(h, w, held)
        planes = self._planes(color, a, tile)
        return planes, tile, sum(self._num_tiles(p, h, w, tile) for p in planes)

    @staticmethod
    def _num_tiles(plane: _Plane, h: int, w: int, tile: int) -> int:
        return plan_tiles(h, w, tile, plane.overlap, multiple=plane.runner.traits.multiple_of,
                          min_size=plane.runner.traits.min_size).num_tiles

    def upscale_loaded(self, img: LoadedImage, progress_cb: ProgressCb | None = None
                       ) -> np.ndarray:
        """Upscale a :class:`~attnsr.data.io.LoadedImage`: uint8 or uint16 (its bit depth)
        ``(sH, sW, C)``, alpha last."""
        dtype = np.uint16 if img.bit_depth > 8 else np.uint8
        return self.upscale_hwc(img.pixels, img.alpha, dtype=dtype, progress_cb=progress_cb)

    def upscale_file(
        self, src: str | Path, dst: str | Path, *, quality: int = 95,
        max_pixels: int | None = None, progress_cb: ProgressCb | None = None,
    ) -> Path:
        """Read ``src``, upscale, write ``dst`` (atomically) with the same bit depth,
        ICC profile and EXIF (orientation already applied). Returns ``dst``."""
        img = read_image(src, max_pixels=max_pixels)
        self.write_upscaled(img, dst, quality=quality, progress_cb=progress_cb)
        return Path(dst)

    def write_upscaled(
        self, img: LoadedImage, dst: str | Path, *, quality: int = 95,
        software: str | None = None, progress_cb: ProgressCb | None = None,
    ) -> float:
        """Upscale ``img`` into the file ``dst`` as :func:`save_like` writes it (same bit
        depth, ICC profile, EXIF, ``software`` marker; atomic). PNG and TIFF are streamed:
        finished rows go to the encoder strip by strip, so the output is never held
        whole (memory: the input, one tile, the overlap band shared with the next strip
        in float, one output strip in the output's dtype); other formats are encoded
        from the whole array. Returns the megapixels written."""
        s = self.scale
        h, w = img.height * s, img.width * s
        channels = img.pixels.shape[2] + (img.alpha is not None)
        fmt = stream_format(dst, bit_depth=img.bit_depth, channels=channels)
        if fmt is None:
            out = self.upscale_loaded(img, progress_cb)
            save_like(dst, out, img, quality=quality, software=software)
            return h * w / 1e6
        dtype = np.uint16 if img.bit_depth > 8 else np.uint8
        rows = self.iter_rows_hwc(img.pixels, img.alpha, dtype=dtype, progress_cb=progress_cb)
        write_image_rows(dst, (block for _, block in rows), width=w, height=h,
                         channels=channels, bit_depth=img.bit_depth,
                         icc_profile=img.icc_profile, exif=img.exif, software=software,
                         format=fmt)
        return h * w / 1e6

    def __call__(self, image: Any, progress_cb: ProgressCb | None = None) -> Any:
        """Upscale a path, PIL image, numpy array or tensor; returns the same kind."""
        if isinstance(image, (str, Path)):
            img = read_image(image)
            out = self.upscale_loaded(img, progress_cb)
            if out.dtype == np.uint16 and out.shape[2] > 1:  # PIL cannot hold it
                return out
            return _to_pil(out, img.icc_profile, img.exif)
        if isinstance(image, Image.Image):
            return self._upscale_pil(image, progress_cb)
        if isinstance(image, np.ndarray):
            return self._upscale_numpy(image, progress_cb)
        if isinstance(image, Tensor):
            return self._upscale_tensor(image, progress_cb)
        raise TypeError(f"cannot upscale a {type(image).__name__}: pass a path, PIL image, "
                        "numpy array or tensor")

    def _upscale_numpy(self, arr: np.ndarray, progress_cb: ProgressCb | None) -> np.ndarray:
        """(H, W[, C]) uint8 / uint16 / float in [0, 1] -> same dtype and layout."""
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"expected an (H, W[, 1-4]) image array, got {arr.shape}")
        x = arr if arr.ndim == 3 else arr[..., None]
        maxval = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
        x = x.astype(np.float32) / np.float32(maxval)
        color, alpha = (x[..., :-1], x[..., -1]) if x.shape[2] in (2, 4) else (x, None)
        dtype = arr.dtype if arr.dtype.kind in "uif" else np.float32
        out = self.upscale_hwc(color, alpha, dtype=dtype, progress_cb=progress_cb)
        return out[..., 0] if arr.ndim == 2 else out

    def _upscale_tensor(self, t: Tensor, progress_cb: ProgressCb | None) -> Tensor:
        """(C, H, W) or (B, C, H, W) float in [0, 1] -> same layout, dtype, device."""
        if t.dim() not in (3, 4):
            raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got {tuple(t.shape)}")
        batch = t if t.dim() == 4 else t[None]
        outs = []
        for item in batch:
            hwc = item.detach().float().cpu().permute(1, 2, 0).numpy()
            sr = self._upscale_numpy(np.ascontiguousarray(hwc), progress_cb)
            outs.append(torch.from_numpy(sr).permute(2, 0, 1))
        out = torch.stack(outs).to(t.device, t.dtype)
        return out if t.dim() == 4 else out[0]

    def _upscale_pil(self, image: Image.Image, progress_cb: ProgressCb | None) -> Image.Image:
        arr, mode = _pil_to_array(image)
        out = self._upscale_numpy(arr, progress_cb)
        res = Image.fromarray(out)  # uint16 (H, W) -> I;16
        for key in ("icc_profile", "exif", "dpi"):
            if key in image.info:
                res.info[key] = image.info[key]
        return res


def save_like(dst: str | Path, out: np.ndarray, source: LoadedImage, *, quality: int = 95,
              software: str | None = None) -> Path:
    """Write ``out`` (from :meth:`Upscaler.upscale_loaded`) to ``dst`` atomically with the
    source's bit depth, ICC profile and EXIF; the format follows ``dst``'s extension;
    ``software`` is stored as the file's marker (see :func:`attnsr.data.io.write_image`)."""
    return write_image(dst, out, bit_depth=source.bit_depth, mode_hint=source.mode,
                       icc_profile=source.icc_profile, exif=source.exif, quality=quality,
                       software=software)


def output_marker(up: Upscaler) -> str:
    """The software marker every ``attnsr upscale`` output carries in its metadata (so
    re-runs never take their own outputs as inputs)."""
    from attnsr import __version__

    return f"attnsr {__version__} ({up.runner.name}, x{up.scale})"


def upscale_path(
    up: Upscaler, src: str | Path, dst: str | Path, *, quality: int = 95,
    max_pixels: int | None = None, software: str | None = None,
    media: MediaOptions | None = None, progress_cb: ProgressCb | None = None,
) -> float:
    """Upscale one file ``src`` into ``dst`` (written atomically): a still image, an
    animated image or a video (``media``: its encoder settings), as ``attnsr upscale``
    does for each of its files, on one machine or in a batch worker. ``progress_cb``
    gets (tiles or frames done, total). Returns the megapixels written (all frames)."""
    kind = media_kind(src)
    if kind == "image":
        img = read_image(src, max_pixels=max_pixels)
        return up.write_upscaled(img, dst, quality=quality, software=software,
                                 progress_cb=progress_cb)
    if kind == "animated":
        from attnsr.inference.video import upscale_animated

        return upscale_animated(src, dst, upscaler=up, quality=quality, software=software,
                                max_pixels=max_pixels, progress_cb=progress_cb).megapixels
    try:
        import attnsr.data.video_io  # noqa: F401 (PyAV present?)
        from attnsr.inference.video import upscale_video
    except ImportError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    media = media or MediaOptions()
    return upscale_video(src, dst, upscaler=up, codec=media.codec, crf=media.crf,
                         pix_fmt=media.pix_fmt, resume=media.resume, software=software,
                         max_pixels=max_pixels, progress_cb=progress_cb).megapixels


def _pil_to_array(image: Image.Image) -> tuple[np.ndarray, str]:
    """A PIL image as (H, W[, C]) uint8/uint16/float32 and the mode it comes back as."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.uint16), "I;16"
    if mode == "F":
        return np.clip(np.asarray(image, np.float32), 0.0, 1.0), "F"
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif mode in ("1", "La"):
        image = image.convert("L" if mode == "1" else "LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    return np.asarray(image), image.mode


def _to_pil(out: np.ndarray, icc: bytes | None, exif: bytes | None) -> Image.Image:
    """uint8 ``(H, W, C)`` or uint16 gray -> PIL (16-bit gray stays ``I;16``)."""
    if out.dtype == np.uint16 and out.shape[2] == 1:
        img = Image.fromarray(out[..., 0])  # I;16
    else:
        img = Image.fromarray(out[..., 0] if out.shape[2] == 1 else out)
    if icc:
        img.info["icc_profile"] = icc
    if exif:
        img.info["exif"] = exif
    return img


def _stepwise(context: Callable[[], AbstractContextManager[Any]], items: Iterator[T]
              ) -> Iterator[T]:
    """``items``, each one produced inside a fresh ``context()`` (a generator cannot hold
    a context across its yields without imposing it on the consumer)."""
    while True:
        with context():
            item = next(items, _END)
        if item is _END:
            return
        yield item


def _offset_cb(cb: ProgressCb | None, offset: int, total: int) -> ProgressCb | None:
    if cb is None:
        return None
    return lambda done, _n: cb(offset + done, total)


def _plane_rows(plane: _Plane, scale: int, tile: int, progress_cb: ProgressCb,
                dtype: Any) -> Iterator[tuple[int, np.ndarray]]:
    """One plane's finished rows as ``(first_row, (n, sW, k) dtype)`` blocks, quantised
    by :func:`~attnsr.inference.tiling.array_sink` (the in-memory path's own rounding)
    as soon as they are final (:func:`~attnsr.inference.tiling.tiled_rows_quantized`),
    into one strip buffer that is reused from block to block."""
    k = plane.channels.stop - plane.channels.start
    store: list[np.ndarray] = []

    def buffer(rows: int, width: int) -> np.ndarray:
        if not store or store[0].shape[0] < rows or store[0].shape[1] != width:
            store[:] = [np.empty((rows, width, k), dtype)]
        return store[0][:rows]

    def quantize(values: Tensor, target: np.ndarray) -> None:
        array_sink(target, to_gray=plane.to_gray)(0, values)

    yield from tiled_rows_quantized(plane.runner, plane.lr, scale, tile, plane.overlap,
                                    quantize, buffer, progress_cb)


def _merge_planes(streams: list[Iterator[tuple[int, np.ndarray]]], channels: list[slice],
                  nc: int, dtype: Any) -> Iterator[tuple[int, np.ndarray]]:
    """Interleave planes (colour, alpha) that fill different ``channels`` of the output
    into ``(first_row, (n, sW, nc))`` blocks in row order. The plane furthest behind is
    advanced; rows wait (copied) until every plane has them, so memory is the lag
    between planes (at most about a strip), never the whole output."""
    pending: list[list[np.ndarray]] = [[] for _ in streams]  # blocks per plane, in order
    done = [0] * len(streams)  # rows each plane has produced
    live = set(range(len(streams)))
    emitted = 0
    while live:
        i = min(live, key=lambda j: done[j])
        try:
            r0, block = next(streams[i])
        except StopIteration:
            live.discard(i)
            continue
        assert r0 == done[i], "planes yield contiguous rows"
        pending[i].append(block.copy())
        done[i] += block.shape[0]
        ready = min(done)
        if ready <= emitted:
            continue
        out = np.empty((ready - emitted, block.shape[1], nc), dtype)
        for j, sl in enumerate(channels):
            filled = 0
            while filled < out.shape[0]:
                head = pending[j][0]
                take = min(head.shape[0], out.shape[0] - filled)
                out[filled : filled + take, :, sl] = head[:take]
                filled += take
                if take == head.shape[0]:
                    pending[j].pop(0)
                else:
                    pending[j][0] = head[take:]
        yield emitted, out
        emitted = ready


def upscale(image: Any, scale: int | None = None, model: Any = None, **options: Any) -> Any:
    """Upscale ``image`` (path, PIL image, numpy array or tensor) and return the same kind
    (a path gives a PIL image).

    Args:
        scale: the factor; None: the model's, or 4 with the bundled default model.
        model: name, bundled weights, checkpoint path, model or descriptor; None: the
            bundled default for ``scale``.
        options: ``tile``, ``overlap``, ``device``, ``precision``, ``alpha_mode``,
            ``budget``, ``backend``, ``tta``, ``fast`` (int8, see :class:`Upscaler`).

    >>> sr = attnsr.upscale("photo.png", scale=4)
    """
    return Upscaler(model, scale=scale, **options)(image)
