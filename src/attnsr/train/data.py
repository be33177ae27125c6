"""Training data: folders decoded once into memory, random aligned patch pairs.

- HR-only folders: the LR image is made with the MATLAB-exact bicubic ``imresize`` (uint8
  path, rounding after each pass) from the HR image cropped to a multiple of the scale,
  once per image (``data.lr_cache: true``, the default: this is exactly how the benchmark
  LR images are made), or per patch from the HR patch (``lr_cache: false``; same path,
  but the kernel taps at the patch border are mirrored instead of reading the neighbours).
- Paired folders (``lr_dir``, DIV2K layout ``X4/0001x4.png`` beside ``0001.png``): the LR
  name with an ``x{scale}`` suffix stripped must match the HR name, and the LR size times
  the scale must equal the HR size.

There is no epoch: the batch of iteration ``i`` is a pure function of ``(seed, i)``.
Global sample ``j`` of iteration ``i`` is drawn with the generator seeded by
``(seed, i, j)``, and rank ``r`` of ``W`` takes samples ``[r B/W, (r+1) B/W)``, so the union
over ranks is the one-process batch and resuming at iteration ``k`` restores the data order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from attnsr.data.degrade import DegradationConfig, degrade
from attnsr.data.io import read_image, to_uint8
from attnsr.data.resize import imresize
from attnsr.errors import ConfigError
from attnsr.train.config import DataConfig, SourceConfig, resolve

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, eq=False)
class TrainImage:
    """One training image in memory: ``hr`` uint8 ``(H, W, 3)``; ``lr`` uint8
    ``(H/s, W/s, 3)`` or ``None`` (made per patch); ``hr_scale``: the factor the decoded
    file was downscaled by (``data.hr_scales``)."""

    path: str
    hr: np.ndarray
    lr: np.ndarray | None
    hr_scale: float = 1.0


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_uint8(path: Path) -> np.ndarray:
    """Decode ``path`` to uint8 RGB ``(H, W, 3)`` (grey replicated, alpha dropped; exact
    for 8-bit files, 16-bit files are rounded to 8 bits)."""
    image = read_image(path)
    return np.ascontiguousarray(to_uint8(image.rgb))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _match_lr(hr_paths: Sequence[Path], lr_dir: Path, scale: int) -> list[Path]:
    """The LR file of each HR file: same stem once an ``x{scale}`` suffix is stripped."""
    suffix = re.compile(rf"x{scale}$", re.IGNORECASE)
    by_stem = {suffix.sub("", p.stem): p for p in list_images(lr_dir)}
    out = []
    for hr in hr_paths:
        if hr.stem not in by_stem:
            raise ConfigError(f"{hr}: no LR image named {hr.stem}x{scale}.* or {hr.stem}.* "
                              f"in {lr_dir}")
        out.append(by_stem[hr.stem])
    return out


def _load_scaled(hr_path: Path, scale: int, patch: int, lr_cache: bool, skip_small: bool,
                 hr_scales: Sequence[float]) -> list[TrainImage]:
    """One HR-only image at each factor of ``hr_scales`` (1.0: as decoded; others: MATLAB
    bicubic downscale of the decoded image), each checked like :func:`_load_one`; the
    downscaled copies too small for the patch are left out."""
    full = load_uint8(hr_path)
    out = []
    for f in hr_scales:
        hr = full if f == 1.0 else imresize(full, f)
        im = _load_one(hr_path, None, scale, patch, lr_cache, skip_small or f != 1.0, hr=hr)
        if im is not None:
            out.append(im if f == 1.0 else TrainImage(im.path, im.hr, im.lr, hr_scale=f))
    return out


def _load_one(hr_path: Path, lr_path: Path | None, scale: int, patch: int,
              lr_cache: bool, skip_small: bool, hr: np.ndarray | None = None
              ) -> TrainImage | None:
    """Decode one (HR, LR) pair, check its sizes and make the cached LR if asked
    (``None``: smaller than the patch and ``skip_small``). ``hr``: the decoded HR already."""
    hr = load_uint8(hr_path) if hr is None else hr
    if lr_path is not None:
        lr = load_uint8(lr_path)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise ConfigError(
                f"{lr_path}: LR size {lr.shape[1]}x{lr.shape[0]} times scale {scale} is not "
                f"the HR size {hr.shape[1]}x{hr.shape[0]} of {hr_path}")
    else:
        hr = modcrop(hr, scale)
        lr = imresize(hr, 1.0 / scale) if lr_cache else None
    if min(hr.shape[:2]) < patch * scale:
        if skip_small:
            return None
        raise ConfigError(
            f"{hr_path}: image {hr.shape[1]}x{hr.shape[0]} is smaller than the HR patch "
            f"{patch * scale}x{patch * scale} (data.patch_size {patch} x scale {scale})")
    return TrainImage(str(hr_path), hr, lr)


def load_source(source: SourceConfig, scale: int, config: DataConfig,
                index: int = 0, threads: int = 4) -> list[TrainImage]:
    """Decode every image of one source folder (checked before training starts)."""
    hr_dir = resolve(config.root, source.hr_dir)
    if not hr_dir.is_dir():
        raise ConfigError(f"data.sources[{index}].hr_dir: folder not found: {hr_dir}")
    hr_paths = list_images(hr_dir)
    if not hr_paths:
        raise ConfigError(f"data.sources[{index}].hr_dir: no images in {hr_dir}")
    lr_paths: list[Path | None] = [None] * len(hr_paths)
    if source.lr_dir:
        lr_dir = resolve(config.root, source.lr_dir)
        if not lr_dir.is_dir():
            raise ConfigError(f"data.sources[{index}].lr_dir: folder not found: {lr_dir}")
        lr_paths = list(_match_lr(hr_paths, lr_dir, scale))
    options = (scale, config.patch_size, config.lr_cache, config.skip_small)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        if config.hr_scales == [1.0]:
            loaded = pool.map(lambda hl: _load_one(hl[0], hl[1], *options),
                              zip(hr_paths, lr_paths, strict=True))
            images = [im for im in loaded if im is not None]
        else:  # HR-only sources (checked with the config)
            loaded_scaled = pool.map(lambda h: _load_scaled(h, *options, config.hr_scales),
                                     hr_paths)
            images = [im for ims in loaded_scaled for im in ims]
    full_size = [im for im in images if im.hr_scale == 1.0]
    if 1.0 in config.hr_scales and len(full_size) < len(hr_paths):
        log.warning("%s: skipped %d image(s) smaller than the HR patch %d px", hr_dir,
                    len(hr_paths) - len(full_size), config.patch_size * scale)
    if len(images) > len(full_size):
        log.info("%s: %d image(s) with %d downscaled copies (data.hr_scales %s)", hr_dir,
                 len(full_size), len(images) - len(full_size), config.hr_scales)
    if not images:
        raise ConfigError(f"data.sources[{index}]: every image in {hr_dir} is smaller than "
                          f"the HR patch {config.patch_size * scale} px")
    return images


def load_sources(config: DataConfig, scale: int, threads: int = 4) -> list[list[TrainImage]]:
    """Decode all sources; raises :class:`ConfigError` naming the first bad folder/file."""
    sources = [load_source(s, scale, config, i, threads) for i, s in enumerate(config.sources)]
    n = sum(len(s) for s in sources)
    mb = sum(im.hr.nbytes + (im.lr.nbytes if im.lr is not None else 0)
             for s in sources for im in s) / 2**20
    log.info("training data: %d images from %d folder(s), %.0f MB in memory",
             n, len(sources), mb)
    return sources


def augment_image(img: np.ndarray, op: int) -> np.ndarray:
    """Dihedral op ``op`` in [0, 8) (bit 0: h-flip, 1: v-flip, 2: transpose) of ``(H, W, C)``."""
    for fn, bit in ((lambda a: a[:, ::-1], 1), (lambda a: a[::-1], 2),
                    (lambda a: a.transpose(1, 0, 2), 4)):
        if op & bit:
            img = fn(img)
    return img


def augment_pair(lr: np.ndarray, hr: np.ndarray, op: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply dihedral op ``op`` in [0, 8) to both images."""
    return augment_image(lr, op), augment_image(hr, op)


class PatchBatches(Dataset):
    """Map-style dataset whose item ``i`` is this rank's share of the batch of iteration ``i``.

    Returns ``(lr, hr)`` float32 tensors in [0, 1]: ``(b, 3, p, p)`` and ``(b, 3, ps, ps)``
    with ``b = batch_size // world_size``. With an enabled ``degradation`` the LR patch is
    made from the (augmented) HR patch by :func:`attnsr.data.degrade.degrade`, with draws
    from the sample's own generator (so it is reproducible and resumable too).
    """

    def __init__(self, sources: list[list[TrainImage]], weights: Sequence[float], *,
                 scale: int, patch_size: int, batch_size: int, augment: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 degradation: DegradationConfig | None = None) -> None:
        if batch_size % world_size:
            raise ConfigError(f"batch_size: {batch_size} is not divisible by the "
                              f"{world_size} processes")
        self.sources = sources
        w = np.asarray(weights, dtype=np.float64)
        self.probs = w / w.sum()
        self.scale, self.patch, self.augment, self.seed = scale, patch_size, augment, seed
        self.local = batch_size // world_size
        self.offset = rank * self.local
        self.degradation = degradation if degradation and degradation.enabled else None

    def __len__(self) -> int:
        return 2**62  # "infinite": the sampler chooses the iterations

    def sample(self, iteration: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Global sample ``j`` of ``iteration``: uint8 LR ``(p, p, 3)`` and HR ``(ps, ps, 3)``."""
        rng = np.random.default_rng([self.seed, iteration, j])
        src = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
        img = src[int(rng.integers(len(src)))]
        s, p = self.scale, self.patch
        y = int(rng.integers(img.hr.shape[0] // s - p + 1))
        x = int(rng.integers(img.hr.shape[1] // s - p + 1))
        hr = img.hr[y * s:(y + p) * s, x * s:(x + p) * s]
        op = int(rng.integers(8)) if self.augment else 0
        if self.degradation is not None:
            hr = np.ascontiguousarray(augment_image(hr, op))
            return degrade(hr, s, self.degradation, rng), hr
        lr = img.lr[y:y + p, x:x + p] if img.lr is not None else imresize(hr, 1.0 / s)
        return augment_pair(lr, hr, op)

    def __getitem__(self, iteration: int) -> tuple[Tensor, Tensor]:
        pairs = [self.sample(iteration, self.offset + k) for k in range(self.local)]
        return _to_tensor([p[0] for p in pairs]), _to_tensor([p[1] for p in pairs])


def _to_tensor(images: list[np.ndarray]) -> Tensor:
    """uint8 ``(H, W, 3)`` list -> float32 ``(B, 3, H, W)`` in [0, 1]."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
    return batch.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def make_loader(dataset: PatchBatches, start: int, stop: int, *, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """Iterate ``dataset[start], ..., dataset[stop - 1]`` (workers keep the order)."""
    return DataLoader(
        dataset, batch_size=None, sampler=range(start, stop), num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
