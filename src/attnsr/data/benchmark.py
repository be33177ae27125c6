"""Benchmark sets laid out as the SR papers distribute them.

::

    Set5/
      HR/baby.png ...                  high-resolution ground truth
      LR_bicubic/X2/baby.png ...       optional: MATLAB-bicubic LR (or ``babyx2.png``)

The HR image is cropped to a multiple of the scale (``hr[:H - H % s, :W - W % s]``). Its LR
is read from ``LR_bicubic/X{s}/`` when that folder exists, otherwise made with the
MATLAB-exact uint8 ``imresize(hr, 1 / s)``, which reproduces those files pixel for pixel.
A folder without ``HR/`` is taken as a folder of HR images.

Grayscale HR images (Set14's ``bridge``) stay one-channel here; the evaluation engine feeds
models a three-channel replica and scores the gray values (this reproduces the published
bicubic numbers; see :mod:`attnsr.evaluate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnsr.data.degrade import PRESETS, degrade_preset
from attnsr.data.io import IMAGE_EXTENSIONS, read_image
from attnsr.data.resize import imresize
from attnsr.errors import ImageReadError

_SSIM_WINDOW = 11  # the SSIM window must fit in the shaved HR


@dataclass(frozen=True, kw_only=True, eq=False)
class BenchmarkItem:
    """One LR/HR pair: uint8 ``(h, w, C)`` and ``(s h, s w, C)``, ``C`` = 1 (gray) or 3."""

    name: str
    lr: np.ndarray
    hr: np.ndarray
    hr_path: Path
    lr_path: Path | None = None  # None: generated with imresize

    @property
    def is_grayscale(self) -> bool:
        return self.hr.shape[2] == 1


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop ``(H, W, ...)`` to a multiple of ``scale`` (bottom/right), as the papers do."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _read_uint8(path: Path, max_pixels: int | None) -> np.ndarray:
    """uint8 ``(H, W, 1|3)`` of an image file (alpha dropped)."""
    return read_image(path, max_pixels=max_pixels).to_uint8()


@dataclass(frozen=True, kw_only=True)
class BenchmarkSet:
    """A benchmark folder at one scale. Iterating loads the items (and raises on bad files);
    :meth:`load` loads one, so a caller can collect errors and go on."""

    name: str
    root: Path
    scale: int
    hr_paths: tuple[Path, ...]
    lr_dir: Path | None = None
    max_pixels: int | None = None
    degradation: str | None = None

    @classmethod
    def from_folder(
        cls, path: str | Path, scale: int, *, max_pixels: int | None = None,
        degradation: str | None = None,
    ) -> BenchmarkSet:
        """The set in ``path`` (``HR/`` + optional ``LR_bicubic/X{scale}/``) at ``scale``.
        ``degradation``: a preset of :data:`attnsr.data.degrade.PRESETS`; the LR images are
        then made from the HR with it (seeded per image), stored LR files are not used.

        Raises:
            ImageReadError: the folder does not exist or holds no images.
        """
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ImageReadError(root, "no such data folder" if not root.exists()
                                 else "not a folder (expected <set>/HR/*.png)")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        hr_dir = root / "HR" if (root / "HR").is_dir() else root
        paths = tuple(list_images(hr_dir))
        if not paths:
            raise ImageReadError(hr_dir, "no images found (expected <set>/HR/*.png, .jpg, ...)")
        lr_dir = root / "LR_bicubic" / f"X{scale}"
        if degradation is not None and degradation not in PRESETS:
            raise ValueError(f"unknown degradation preset {degradation!r}; "
                             f"known: {sorted(PRESETS)}")
        return cls(name=root.name, root=root, scale=scale, hr_paths=paths,
                   lr_dir=lr_dir if lr_dir.is_dir() else None, max_pixels=max_pixels,
                   degradation=degradation)

    def __len__(self) -> int:
        return len(self.hr_paths)

    def __iter__(self) -> Iterator[BenchmarkItem]:
        for i in range(len(self)):
            yield self.load(i)

    def lr_path_for(self, hr_path: Path) -> Path | None:
        """The stored LR of ``hr_path``: same stem (any image extension) or ``<stem>x{s}``."""
        if self.lr_dir is None:
            return None
        for stem in (hr_path.stem, f"{hr_path.stem}x{self.scale}"):
            for ext in (hr_path.suffix, *IMAGE_EXTENSIONS):
                candidate = self.lr_dir / f"{stem}{ext}"
                if candidate.is_file():
                    return candidate
        return None

    def load(self, index: int) -> BenchmarkItem:
        """Item ``index``: the mod-cropped HR and its LR. Raises :class:`ImageReadError`."""
        hr_path = self.hr_paths[index]
        hr = _read_uint8(hr_path, self.max_pixels)
        self._check_size(hr_path, hr)
        hr = modcrop(hr, self.scale)
        if self.degradation is not None:
            lr = degrade_preset(hr, self.scale, self.degradation, hr_path.stem)
            return BenchmarkItem(name=hr_path.stem, lr=lr, hr=hr, hr_path=hr_path)
        lr_path = self.lr_path_for(hr_path)
        if lr_path is None:
            return BenchmarkItem(name=hr_path.stem, lr=imresize(hr, 1.0 / self.scale), hr=hr,
                                 hr_path=hr_path)
        lr = _read_uint8(lr_path, self.max_pixels)
        expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale, hr.shape[2])
        if lr.shape != expected:
            raise ImageReadError(lr_path, f"LR is {lr.shape[1]}x{lr.shape[0]}x{lr.shape[2]}, "
                                          f"expected {expected[1]}x{expected[0]}x{expected[2]} "
                                          f"(HR {hr_path.name} / {self.scale})")
        return BenchmarkItem(name=hr_path.stem, lr=lr, hr=hr, hr_path=hr_path, lr_path=lr_path)

    def _check_size(self, path: Path, hr: np.ndarray) -> None:
        """The HR must hold at least one LR pixel and, once shaved, one SSIM window."""
        h, w = hr.shape[:2]
        s = self.scale
        if h < s or w < s:
            raise ImageReadError(path, f"image is {w}x{h}, smaller than the scale {s}")
        need = 2 * s + _SSIM_WINDOW
        if h - h % s < need or w - w % s < need:
            raise ImageReadError(path, f"image is {w}x{h}, too small to score at scale {s} "
                                       f"(needs at least {need}x{need})")
