"""One path from a model name to pixels: :func:`resolve` is the only code that turns
what a user names into a :class:`~attnsr.runner.Runner`.

What it accepts, in this order:

- ``None``: the bundled default for the scale (:func:`default_model`: the real-world
  weights where they ship, else the clean ones; x4 when no scale is given);
- a :class:`~attnsr.runner.Runner` (checked, returned) or an attnsr ``nn.Module``;
- a pretrained name, ``<preset>.<tag>`` or an alias (``attnsr_lite.x4``, ``attnsr-x4``);
- an ``.onnx`` file (onnxruntime backend);
- an attnsr checkpoint (directory with ``config.json`` + ``model.safetensors``, or one
  ``.safetensors``) or an official ``.pth/.pt/.safetensors`` (architecture detected);
- a registered preset name: its pretrained weights for the scale when it has some;
  without weights it is refused unless ``pretrained=False`` (random weights, for
  architecture work: ``attnsr export/bench --random-weights``). Parameter-free presets
  (``bicubic``) need no weights.

Device and precision are decided here too (``auto`` rules, one-line errors for a device
this torch cannot use, warnings for slow or unsafe precisions), and ``backend`` picks
torch or onnxruntime (``auto``: onnxruntime for ``.onnx`` files; on the CPU in fp32, for
weights from a file, whichever of the two is faster on this machine, measured once per
model and cached: :mod:`attnsr.export.autobackend`; torch otherwise). ``fast`` runs the
int8 graph shipped with bundled weights (:mod:`attnsr.export.fast`).
``denoise`` interpolates the clean and the real-world weights of a bundled model
(network interpolation, as Real-ESRGAN's ``-dn``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnsr import checkpoint
from attnsr.errors import ConfigError, ModelNotFoundError
from attnsr.models import registry
from attnsr.runner import BACKENDS, PRECISIONS, Runner, describe

log = logging.getLogger(__name__)

DEFAULT_SCALE = 4


# --------------------------------------------------------------------------- defaults
def default_model(scale: int | None = None, *, degradation: str = "real") -> str:
    """The bundled default for ``scale`` (4 if None): the weights trained for
    ``degradation`` inputs (``real``: photos with JPEG/noise/blur) where they ship, else
    the clean ones. Raises :class:`ModelNotFoundError` when nothing ships for the scale."""
    scale = DEFAULT_SCALE if scale is None else int(scale)
    tags = [w for w in registry.list_pretrained() if w.scale == scale]
    if not tags:
        raise ModelNotFoundError(f"no bundled model for x{scale}; models with weights: "
                                 f"{_with_weights()}")
    preferred = [w for w in tags if w.degradation == degradation]
    return (preferred or tags)[0].name


def _with_weights() -> str:
    names = registry.list_models(pretrained=True)
    return ", ".join(names) if names else "none"


# --------------------------------------------------------------------------- device
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU. An explicit device this torch
    build cannot use is a one-line :class:`ConfigError`."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise ConfigError(f"--device {device}: {why} (torch {torch.__version__}); "
                          "use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                          "device(s) visible")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available here; use cpu or auto")
    return dev


def choose_precision(requested: str, device: torch.device, runner: Runner) -> str:
    """The precision to run: ``auto`` is fp32 off CUDA; on CUDA fp16 if the model is
    fp16-safe, else bf16 if bf16-safe, else fp32. An unsafe explicit request is
    downgraded with a warning; bf16/fp16 on the CPU are allowed with a warning (they
    are emulated there: about 3x slower than fp32)."""
    if requested not in (*PRECISIONS, "auto"):
        raise ConfigError(f"--precision {requested!r}: use auto, fp32, bf16 or fp16")
    if runner.backend != "torch":
        if requested not in ("auto", "fp32"):
            log.warning("%s: the %s backend runs in fp32; --precision %s ignored",
                        runner.name, runner.backend, requested)
        return "fp32"
    traits = runner.traits
    if requested == "auto":
        if device.type != "cuda":
            return "fp32"
        if traits.fp16_safe:
            return "fp16"
        return "bf16" if traits.bf16_safe and torch.cuda.is_bf16_supported() else "fp32"
    safe = {"fp32": True, "bf16": traits.bf16_safe, "fp16": traits.fp16_safe}
    chosen = requested if safe[requested] else (
        "bf16" if requested == "fp16" and traits.bf16_safe else "fp32")
    if chosen != requested:
        log.warning("%s is not %s-safe; using %s", runner.name, requested, chosen)
    if chosen != "fp32" and device.type == "cpu":
        log.warning("--precision %s on the CPU is emulated and about 3x slower than fp32 "
                    "(same quality at best); use fp32 unless you need it", chosen)
    return chosen


# --------------------------------------------------------------------------- resolving
def _has_params(preset: str) -> bool:
    with torch.device("meta"):
        model = registry.create_model(preset, scale=DEFAULT_SCALE)
    return any(True for _ in model.parameters())


def _refuse_without_weights(name: str) -> None:
    raise ModelNotFoundError(
        f"{name}: no pretrained weights (models with weights: {_with_weights()}); pass a "
        "checkpoint file, or --random-weights / pretrained=False for architecture work")


def _load_tag(tag: registry.PretrainedTag, scale: int | None) -> Runner:
    if scale is not None and tag.scale != scale:
        raise ConfigError(f"{tag.name} upscales x{tag.scale}, but x{scale} was asked")
    if not tag.available:
        raise ModelNotFoundError(f"{tag.name}: its weight files are not installed "
                                 f"({tag.directory})")
    runner = checkpoint.load_checkpoint(tag.directory, scale=tag.scale)
    runner.name = tag.name
    return runner


def _load_preset(name: str, scale: int | None, pretrained: bool) -> Runner:
    """A registered preset: its weights for ``scale`` (the first registered tag), random
    weights with ``pretrained=False``, or refused."""
    if pretrained:
        tags = registry.pretrained_of(name, scale if scale is not None else None)
        if scale is None and tags:
            tags = [t for t in tags if t.scale == DEFAULT_SCALE] or tags
        if tags:
            return _load_tag(tags[0], scale)
        if _has_params(name):
            _refuse_without_weights(name)
    scale = DEFAULT_SCALE if scale is None else scale
    return describe(registry.create_model(name, scale=scale), name=name)


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text
            or Path(text).suffix in (".safetensors", ".onnx", *checkpoint.OFFICIAL_SUFFIXES))


def _resolve_torch(model: Any, scale: int | None, pretrained: bool, strict: bool) -> Runner:
    """Step one: what ``model`` names, as a torch runner."""
    if isinstance(model, Runner):
        return model
    if isinstance(model, nn.Module):
        return describe(model)
    text = os.fspath(model)
    tag = None if isinstance(model, Path) else registry.get_pretrained(text)
    if tag is not None:
        return _load_tag(tag, scale)
    path = Path(text).expanduser()
    if path.exists():
        return checkpoint.load_checkpoint(path, scale=scale, strict=strict)
    if text in registry.list_models() and not isinstance(model, Path):
        return _load_preset(text, scale, pretrained)
    if _looks_like_path(text):
        raise ModelNotFoundError(f"{text}: no such checkpoint file or directory")
    raise ModelNotFoundError(f"unknown model {text!r}: not a pretrained name, a registered "
                             f"model or an existing file; models with weights: "
                             f"{_with_weights()} (all models: `attnsr models`)")


def _is_onnx(model: Any) -> bool:
    return isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx")


def resolve(
    model: Any = None,
    *,
    scale: int | None = None,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    precision: str = "auto",
    pretrained: bool = True,
    strict: bool = True,
    denoise: float | None = None,
    threads: int | None = None,
    tta: bool = False,
    fast: bool = False,
) -> Runner:
    """The :class:`Runner` for ``model`` (see the module docstring), on ``device``, at
    ``precision``, in eval mode, its weights in the runner's memory order; ``tta``: the
    x8 self-ensemble quality mode (8x the compute); ``fast``: the int8 onnxruntime graph
    shipped with bundled weights (:mod:`attnsr.export.fast`; CPU only).

    ``backend="auto"``: onnxruntime for ``.onnx`` files; for weights from a file (not
    blended by ``denoise``) run on the CPU in fp32, the faster of torch and onnxruntime
    on this machine (:mod:`attnsr.export.autobackend`: measured once per model,
    cached); torch otherwise.

    Raises :class:`ModelNotFoundError` (unknown names, missing files, presets without
    weights) and :class:`ConfigError` (scale mismatch, bad device/precision/backend).
    """
    if backend not in (*BACKENDS, "auto"):
        raise ConfigError(f"--backend {backend!r}: use auto, torch or onnxruntime")
    if fast:
        return _fast(model, scale, backend, device, precision, denoise, threads, tta)
    if model is None:
        model = default_model(scale)
    dev = resolve_device(device)
    if _is_onnx(model):
        if backend == "torch":
            raise ConfigError(f"{model}: an .onnx file runs with --backend onnxruntime")
        if denoise is not None:
            raise ConfigError("--denoise needs the bundled weights, not an .onnx file")
        runner = _onnx(model, scale, threads)
    else:
        runner = (_interpolated(model, scale, denoise) if denoise is not None
                  else _resolve_torch(model, scale, pretrained, strict))
        if backend == "onnxruntime":
            runner = _onnx(runner, scale, threads)
    if scale is not None and runner.scale != scale and not runner.traits.any_scale:
        raise ConfigError(f"model {runner.name} upscales x{runner.scale}, but x{scale} "
                          "was asked")
    runner.to(dev).eval()
    runner.tta = tta
    runner.set_precision(choose_precision(precision, dev, runner))
    if backend == "auto" and denoise is None and _measurable(runner, dev):
        from attnsr.export.autobackend import choose_backend

        _, ort = choose_backend(runner, threads=threads or torch.get_num_threads())
        if ort is not None:
            ort.to(dev).eval()
            ort.tta = tta
            return ort
    return runner


def _measurable(runner: Runner, dev: torch.device) -> bool:
    """Whether ``backend="auto"`` measures torch against onnxruntime for ``runner``: a
    torch runner of weights from a file (the export is cached by their fingerprint), on
    the CPU in fp32, dynamically exportable, with onnxruntime installed."""
    if (runner.backend != "torch" or dev.type != "cpu" or runner.precision != "fp32"
            or not runner.source or not Path(runner.source).exists()
            or runner.traits.export_static_reason):
        return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fast(model: Any, scale: int | None, backend: str, device: str | torch.device,
          precision: str, denoise: float | None, threads: int | None, tta: bool) -> Runner:
    """The shipped int8 runner (``fast=True``); one-line errors for what it cannot do."""
    from attnsr.export.fast import fast_runner

    if backend == "torch":
        raise ConfigError("--fast runs int8 graphs with onnxruntime, not --backend torch")
    if denoise is not None:
        raise ConfigError("--fast and --denoise cannot be combined (the int8 graphs are "
                          "of the bundled weights as shipped)")
    if precision not in ("auto", "fp32"):
        raise ConfigError(f"--fast is int8; --precision {precision} does not apply")
    dev = resolve_device(device)
    if dev.type != "cpu":
        if str(device) != "auto":
            raise ConfigError(f"--fast runs on the CPU (onnxruntime), not {dev}")
        dev = torch.device("cpu")
    runner = fast_runner(model, scale=scale, threads=threads or torch.get_num_threads())
    runner.to(dev).eval()
    runner.tta = tta
    return runner


def _onnx(model: Any, scale: int | None, threads: int | None) -> Runner:
    from attnsr.export.runtime import onnx_runner  # optional extra: onnxruntime

    return onnx_runner(model, scale=scale, threads=threads)


# --------------------------------------------------------------------------- denoise
def denoise_pair(tag: registry.PretrainedTag
                 ) -> tuple[registry.PretrainedTag, registry.PretrainedTag] | None:
    """The installed (clean, real-world) weights of ``tag``'s preset, scale and overrides
    (what ``denoise`` blends), or None when one of the two does not ship."""
    same = [t for t in registry.pretrained_of(tag.preset, tag.scale)
            if t.overrides == tag.overrides]
    clean = next((t for t in same if t.degradation == "bicubic"), None)
    real = next((t for t in same if t.degradation == "real"), None)
    return (clean, real) if clean is not None and real is not None else None


def _pair(model: Any, scale: int | None) -> tuple[registry.PretrainedTag,
                                                  registry.PretrainedTag]:
    """The (clean, real-world) weights of the same preset and scale as ``model``."""
    tag = registry.get_pretrained(str(model)) if isinstance(model, str) else None
    if tag is None:
        raise ConfigError(f"--denoise needs a bundled model with a clean and a real-world "
                          f"variant (e.g. {default_model(scale)}), not {model!r}")
    pair = denoise_pair(tag)
    if pair is None:
        raise ConfigError(f"--denoise: {tag.name} has no clean/real-world pair at "
                          f"x{tag.scale}")
    return pair


def _interpolated(model: Any, scale: int | None, strength: float) -> Runner:
    """Weights ``(1 - strength) * clean + strength * real`` (``strength`` in [0, 1]):
    0 keeps grain and texture as the clean model does, 1 is the real-world model."""
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"--denoise {strength}: use a strength in [0, 1]")
    clean, real = _pair(model, scale)
    runner = _load_tag(real, scale)
    theirs = _load_tag(clean, scale).model.state_dict()
    runner.model.load_state_dict(checkpoint.blend_state_dicts(
        [runner.model.state_dict(), theirs], [strength, 1.0 - strength]))
    runner.name = f"{real.name}@denoise={strength:g}"
    return runner


# --------------------------------------------------------------------------- API
def load_pretrained(
    name_or_path: Any,
    *,
    scale: int | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
    pretrained: bool = True,
) -> Runner:
    """A torch :class:`Runner` ready for inference: :func:`resolve` with the torch backend
    (``attnsr.load_pretrained("attnsr-x4")``, a checkpoint path, an official ``.pth``)."""
    return resolve(name_or_path, scale=scale, backend="torch", device=device,
                   precision="fp32", pretrained=pretrained, strict=strict)
