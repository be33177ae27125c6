"""The evaluation engine behind ``attnsr eval`` and training validation.

``evaluate(model, sets, scales)`` runs a model over benchmark folders and scores every
image with the papers' protocol (:func:`attnsr.metrics.evaluate_pair`: Y channel, shave
``scale``). The model is a :class:`~attnsr.runner.Runner`, any callable
``lr (1, 3, h, w) float [0, 1] -> sr (1, 3, sh, sw)``, or a mapping ``{scale: model}``.

Two protocol details decided here:

- **bicubic**: MATLAB's ``imresize(uint8_lr, s)`` rounds to uint8 after each 1-D pass and
  the published bicubic numbers come from it. So a model whose architecture is ``bicubic``
  is not called on float tensors: the engine runs the numpy uint8 path
  (:func:`attnsr.data.resize.imresize`) at the requested scale.
- **grayscale** HR (Set14 ``bridge``): the model gets the gray LR replicated to three
  channels; its output is turned back to gray with the BT.601 luma (the weights of the Y
  channel, normalised), rounded to uint8, and scored on gray values like the HR. This gives
  the published bicubic Set14 numbers. The model rows of most papers come from Python code
  (BasicSR, EDSR) that reads the gray PNG as three equal channels and scores
  ``rgb2ycbcr``'s Y (``16 + 219/255 v``): +1.32 dB on ``bridge``, +0.094 dB on the Set14
  mean. ``gray_as_rgb=True`` (``attnsr eval --gray-as-rgb``) scores that way: with it the
  official BSRN/BSRN-S/IMDN checkpoints give their published Set14 figures
  (docs/zoo/README.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attnsr.data.benchmark import BenchmarkItem, BenchmarkSet
from attnsr.data.degrade import PRESETS
from attnsr.data.io import to_uint8
from attnsr.errors import AttnsrError, ConfigError
from attnsr.fs import atomic_write
from attnsr.metrics import evaluate_pair

ModelFn = Callable[[Tensor], Tensor]
# progress(done, total, description): after each image (and once with done = 0)
ProgressFn = Callable[[int, int, str], None]

_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    set: str
    scale: int
    image: str
    psnr: float
    ssim: float
    seconds: float


@dataclass(frozen=True, kw_only=True)
class SetSummary:
    """Means over the images of one (set, scale); ``seconds`` is the total model time."""

    set: str
    scale: int
    psnr: float
    ssim: float
    images: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class EvalError:
    set: str
    scale: int
    path: str
    message: str


@dataclass(kw_only=True)
class EvalReport:
    """Per-image results, errors, and per-(set, scale) means (:meth:`summaries`)."""

    model: str = ""
    y_channel: bool = True
    results: list[ImageResult] = field(default_factory=list)
    errors: list[EvalError] = field(default_factory=list)

    def summaries(self) -> list[SetSummary]:
        """Mean PSNR/SSIM per (set, scale), in evaluation order."""
        groups: dict[tuple[str, int], list[ImageResult]] = {}
        for r in self.results:
            groups.setdefault((r.set, r.scale), []).append(r)
        return [SetSummary(set=k[0], scale=k[1], images=len(v),
                           psnr=float(np.mean([r.psnr for r in v])),
                           ssim=float(np.mean([r.ssim for r in v])),
                           seconds=float(sum(r.seconds for r in v)))
                for k, v in groups.items()]

    def summary(self, set_name: str, scale: int) -> SetSummary | None:
        return next((s for s in self.summaries() if (s.set, s.scale) == (set_name, scale)),
                    None)

    def to_dict(self) -> dict[str, Any]:
        channel = "Y channel (rgb2ycbcr)" if self.y_channel else "RGB"
        protocol = f"{channel}, shave = scale"
        return {"model": self.model, "protocol": protocol,
                "summary": [asdict(s) for s in self.summaries()],
                "images": [asdict(r) for r in self.results],
                "errors": [asdict(e) for e in self.errors]}

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per image, then one ``kind=mean`` row per (set, scale)."""
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["kind", "set", "scale", "image", "psnr", "ssim", "seconds", "images"])
        for r in self.results:
            out.writerow(["image", r.set, r.scale, r.image, f"{r.psnr:.6f}", f"{r.ssim:.6f}",
                          f"{r.seconds:.4f}", 1])
        for s in self.summaries():
            out.writerow(["mean", s.set, s.scale, "", f"{s.psnr:.6f}", f"{s.ssim:.6f}",
                          f"{s.seconds:.4f}", s.images])
        return buf.getvalue()

    def to_markdown(self, per_image: bool = True) -> str:
        lines = [f"# Evaluation: {self.model}", "",
                 "| Set | Scale | PSNR | SSIM | Images | Seconds |", "|---|---|---|---|---|---|"]
        lines += [f"| {s.set} | x{s.scale} | {s.psnr:.3f} | {s.ssim:.4f} | {s.images} | "
                  f"{s.seconds:.2f} |" for s in self.summaries()]
        if per_image and self.results:
            lines += ["", "| Set | Scale | Image | PSNR | SSIM | Seconds |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r.set} | x{r.scale} | {r.image} | {r.psnr:.3f} | {r.ssim:.4f} | "
                      f"{r.seconds:.3f} |" for r in self.results]
        if self.errors:
            lines += ["", "Errors:", ""] + [f"- {e.message}" for e in self.errors]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write as JSON, CSV or Markdown by the suffix of ``path`` (atomically)."""
        path = Path(path)
        render = report_writer(path)
        with atomic_write(path) as tmp:
            tmp.write_text(render(self), encoding="utf-8")
        return path


_WRITERS: dict[str, Callable[[EvalReport], str]] = {
    ".json": EvalReport.to_json, ".csv": EvalReport.to_csv, ".md": EvalReport.to_markdown,
}


def report_writer(path: Path) -> Callable[[EvalReport], str]:
    """The renderer for ``path``'s suffix; :class:`ConfigError` for unknown suffixes."""
    if path.suffix.lower() not in _WRITERS:
        raise ConfigError(f"{path}: unknown report format {path.suffix!r} "
                          "(use .json, .csv or .md)")
    return _WRITERS[path.suffix.lower()]


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: identical images (PSNR inf) are written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- running


def uint8_path(model: Any) -> Callable[[np.ndarray, int], np.ndarray] | None:
    """The model's exact integer hook ``upscale_uint8(lr, scale)`` (runner or module), if
    it has one (MATLAB bicubic: rounding after each pass, as the published numbers)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "upscale_uint8", None)


def _any_scale(model: Any) -> bool:
    traits = getattr(model, "traits", None)
    traits = traits() if callable(traits) else traits
    return bool(getattr(traits, "any_scale", False))


def _model_device(model: Any, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")


def _model_for_scale(model: Any, scale: int) -> Any:
    """The model to run at ``scale``: from a mapping, or ``model`` if its scale agrees."""
    if isinstance(model, Mapping):
        if scale not in model:
            raise ConfigError(f"no model given for scale x{scale}")
        return model[scale]
    own = getattr(model, "scale", None)
    if isinstance(own, int) and own != scale and not _any_scale(model):
        raise ConfigError(f"model {getattr(model, 'name', '')!r} is x{own}, cannot evaluate "
                          f"at x{scale}")
    return model


def super_resolve(model: Any, lr: np.ndarray, scale: int,
                  device: torch.device | str | None = None) -> np.ndarray:
    """uint8 ``(h, w, C)`` -> uint8 ``(s h, s w, C)`` with ``model`` (see the module doc).

    Gray (C = 1) goes in as a 3-channel replica unless the model takes one channel, and
    comes back as the BT.601 luma of the output.
    """
    hook = uint8_path(model)
    if hook is not None:
        return hook(lr, scale)
    channels = int(getattr(model, "in_channels", 3))
    x = lr if lr.shape[2] == channels else np.repeat(lr[..., :1], channels, axis=2)
    if x.shape[2] != channels:
        raise ConfigError(f"model takes {channels} channel(s), image has {lr.shape[2]}")
    dev = _model_device(model, device)
    t = torch.from_numpy(np.array(x, order="C")).permute(2, 0, 1)[None].to(dev)  # own copy
    with torch.inference_mode():
        sr = model(t.float().div_(255.0)).clamp(0.0, 1.0)
    out = sr[0].permute(1, 2, 0).double().cpu().numpy()
    if lr.shape[2] == 1 and out.shape[2] == 3:
        out = (out @ _LUMA)[..., None]
    return to_uint8(out)


def _score_item(model: Any, item: BenchmarkItem, bset: BenchmarkSet, y_channel: bool,
                device: torch.device | str | None, gray_as_rgb: bool = False) -> ImageResult:
    lr, hr = item.lr, item.hr
    if gray_as_rgb and hr.shape[2] == 1:  # three equal channels, scored through rgb2ycbcr
        lr, hr = np.repeat(lr, 3, axis=2), np.repeat(hr, 3, axis=2)
    start = time.perf_counter()
    sr = super_resolve(model, lr, bset.scale, device)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if sr.shape != hr.shape:
        raise ConfigError(f"{item.hr_path}: model output is {sr.shape[1]}x{sr.shape[0]}x"
                          f"{sr.shape[2]}, expected {hr.shape[1]}x{hr.shape[0]}x{hr.shape[2]}")
    psnr, ssim = evaluate_pair(sr, hr, bset.scale, y_channel=y_channel)
    return ImageResult(set=bset.name, scale=bset.scale, image=item.name, psnr=psnr, ssim=ssim,
                       seconds=seconds)


def build_sets(sets: Iterable[str | Path | BenchmarkSet], scales: Sequence[int], *,
               max_pixels: int | None = None, degradation: str | None = None
               ) -> list[BenchmarkSet]:
    """Folders x scales -> benchmark sets (a :class:`BenchmarkSet` is kept as it is).

    ``degradation``: a preset of :data:`attnsr.data.degrade.PRESETS` that makes the LR
    images. Raises :class:`~attnsr.errors.ImageReadError` for a missing or empty folder
    and :class:`ConfigError` for an unknown preset, before anything runs.
    """
    if degradation is not None and degradation not in PRESETS:
        raise ConfigError(f"--degradation {degradation!r}: use one of {sorted(PRESETS)}")
    out: list[BenchmarkSet] = []
    for s in sets:
        if isinstance(s, BenchmarkSet):
            out.append(s)
        else:
            out += [BenchmarkSet.from_folder(s, scale, max_pixels=max_pixels,
                                            degradation=degradation) for scale in scales]
    return out


def evaluate(
    model_fn: Any,
    sets: Iterable[str | Path | BenchmarkSet],
    scales: Sequence[int] = (),
    *,
    progress: ProgressFn | None = None,
    y_channel: bool = True,
    device: torch.device | str | None = None,
    max_pixels: int | None = None,
    name: str = "",
    gray_as_rgb: bool = False,
) -> EvalReport:
    """Evaluate ``model_fn`` on every folder in ``sets`` at every scale in ``scales``.

    Args:
        model_fn: a ModelDescriptor, a callable ``(1, C, h, w) -> (1, C, sh, sw)`` in
            [0, 1], or ``{scale: model}``.
        sets: benchmark folders (combined with each of ``scales``) or BenchmarkSets.
        progress: called as ``progress(done, total, description)``.
        y_channel: the papers' Y-channel protocol (False: RGB).
        device: where inputs go (default: the descriptor's device, else CPU).
        gray_as_rgb: score a grayscale HR as three equal channels through ``rgb2ycbcr``
            (``16 + 219/255 v``), as BasicSR/EDSR-style Python code does (the model rows
            of most papers: +1.32 dB on Set14 ``bridge``, +0.094 dB on the Set14 mean);
            default: gray values, as the papers' MATLAB bicubic rows.

    Returns:
        An :class:`EvalReport`; unreadable images become ``errors`` and the rest still run.
    """
    bsets = build_sets(sets, scales, max_pixels=max_pixels)
    report = EvalReport(model=name or str(getattr(model_fn, "name", "") or "model"),
                        y_channel=y_channel)
    models = [_model_for_scale(model_fn, b.scale) for b in bsets]  # fail before running
    total, done = sum(len(b) for b in bsets), 0
    if progress:
        progress(0, total, "")
    for bset, fn in zip(bsets, models, strict=True):
        for i, hr_path in enumerate(bset.hr_paths):
            try:
                report.results.append(_score_item(fn, bset.load(i), bset, y_channel, device,
                                                  gray_as_rgb))
            except AttnsrError as exc:
                report.errors.append(EvalError(set=bset.name, scale=bset.scale,
                                               path=str(hr_path), message=str(exc)))
            done += 1
            if progress:
                progress(done, total, f"{bset.name} x{bset.scale} {hr_path.stem}")
    return report
