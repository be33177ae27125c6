"""The one model registry.

Three levels, as in timm:
- *architectures*: a model class plus its frozen config dataclass and the tiny config
  the tests build it with (``register_arch``), optionally with a detector that
  recognises the architecture's official checkpoints from their state-dict keys;
- *presets*: named, documented variants (``rcan``, ``rcan_small``, ``swinir_light`` ...)
  that fix some config fields (``register_preset``);
- *pretrained tags*: weights of a preset, named ``<preset>.<tag>`` (``attnsr_lite.x4``,
  with the short alias ``attnsr-x4``), with their files, scale, config overrides and
  what inputs they were trained for (``register_pretrained``).

``create_model(name, scale=4, **overrides)`` builds a preset with random weights;
``list_models()`` lists the presets, ``list_models(pretrained=True)`` the tags whose
weights are present. Turning a name into something that runs is
:func:`attnsr.resolver.resolve`'s job, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from attnsr.config import from_dict, to_dict
from attnsr.errors import ModelNotFoundError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# detector(state_dict) -> config kwargs (with scale) if the keys are this arch's, else None
Detector = Callable[[Mapping[str, torch.Tensor]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ArchEntry:
    """An architecture: ``tiny`` are the config overrides that make it small enough for
    unit tests (every registered architecture has them, so no test runs it full size)."""

    name: str
    model_cls: type
    config_cls: type
    tiny: Mapping[str, Any]
    detect: Detector | None = None
    # official-checkpoint key conversion (official state dict -> ours); identity if None
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    scales: tuple[int, ...] = (2, 3, 4)


@dataclass(frozen=True, kw_only=True)
class PretrainedTag:
    """One set of weights of a preset, shipped inside the package.

    Attributes:
        preset: the registered preset the weights belong to.
        tag: the weight's tag; the full name is ``<preset>.<tag>``.
        scale: upscaling factor.
        files: folder under ``attnsr/weights/`` with ``config.json`` + ``model.safetensors``
            (+ ``MODEL_CARD.md``, ``results.json``, ``training.json``).
        overrides: config fields that differ from the preset's (e.g. ``n_blocks``).
        aliases: short names users may type (``attnsr-x4``).
        degradation: the inputs it was trained for: ``bicubic`` (clean MATLAB-bicubic
            downscales, the papers' benchmarks) or ``real`` (blur, noise, JPEG).
        train_config: the training config under ``configs/`` of its last stage.
        description: one line for ``attnsr models --pretrained``.
    """

    preset: str
    tag: str
    scale: int
    files: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    degradation: Literal["bicubic", "real"] = "bicubic"
    train_config: str = ""
    license: str = "Apache-2.0"
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.preset}.{self.tag}"

    @property
    def directory(self) -> Path:
        return WEIGHTS_DIR / self.files

    @property
    def available(self) -> bool:
        d = self.directory
        return (d / "config.json").is_file() and (d / "model.safetensors").is_file()

    def results(self) -> dict[str, Any]:
        """Measured results saved beside the weights (``results.json``; {} if none)."""
        path = self.directory / "results.json"
        return json.loads(path.read_text()) if path.is_file() else {}


_ARCHS: dict[str, ArchEntry] = {}
_PRESETS: dict[str, Preset] = {}
_PRETRAINED: dict[str, PretrainedTag] = {}
_ALIASES: dict[str, str] = {}


def register_arch(
    name: str,
    config_cls: type,
    *,
    tiny: Mapping[str, Any],
    detect: Detector | None = None,
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as architecture ``name`` with its config class
    and ``tiny``, the config overrides the tests build it with (``{}`` if it is small)."""

    def deco(cls: type) -> type:
        if name in _ARCHS and _ARCHS[name].model_cls is not cls:
            raise ValueError(f"architecture {name!r} registered twice")
        cls.arch_name = name
        _ARCHS[name] = ArchEntry(name, cls, config_cls, dict(tiny), detect, convert)
        return cls

    return deco


def register_preset(
    name: str,
    arch: str,
    *,
    description: str = "",
    scales: tuple[int, ...] = (2, 3, 4),
    **defaults: Any,
) -> None:
    """Register a named preset of architecture ``arch`` with config ``defaults`` and a
    one-line ``description`` (required: every variant is documented)."""
    if name in _PRESETS:
        raise ValueError(f"model {name!r} registered twice")
    if not description.strip():
        raise ValueError(f"model {name!r}: a preset needs a description")
    if "." in name:
        raise ValueError(f"model {name!r}: '.' separates a preset from its weight tag")
    _PRESETS[name] = Preset(name, arch, dict(defaults), description, tuple(scales))


def register_pretrained(preset: str, tag: str, **fields: Any) -> PretrainedTag:
    """Register weights ``<preset>.<tag>`` (see :class:`PretrainedTag` for ``fields``)."""
    if preset not in _PRESETS:
        raise ValueError(f"pretrained {preset}.{tag}: register the preset {preset!r} first")
    entry = PretrainedTag(preset=preset, tag=tag, **fields)
    for key in (entry.name, *entry.aliases):
        if key in _PRETRAINED or key in _ALIASES or key in _PRESETS:
            raise ValueError(f"pretrained name {key!r} registered twice")
    _PRETRAINED[entry.name] = entry
    _ALIASES.update({alias: entry.name for alias in entry.aliases})
    return entry


def _ensure_loaded() -> None:
    # Importing the package registers every architecture (explicit imports there).
    import attnsr.models  # noqa: F401


def list_models(pretrained: bool = False) -> list[str]:
    """Names of all registered presets, sorted; ``pretrained=True``: the names
    (``<preset>.<tag>``) of the weights that are present."""
    _ensure_loaded()
    if pretrained:
        return sorted(name for name, w in _PRETRAINED.items() if w.available)
    return sorted(_PRESETS)


def list_pretrained(available_only: bool = True) -> list[PretrainedTag]:
    """Registered weights in registration order (by default only those present)."""
    _ensure_loaded()
    return [w for w in _PRETRAINED.values() if w.available or not available_only]


def get_pretrained(name: str) -> PretrainedTag | None:
    """The weights called ``name`` (``<preset>.<tag>`` or an alias), or None."""
    _ensure_loaded()
    return _PRETRAINED.get(_ALIASES.get(name, name))


def pretrained_of(preset: str, scale: int | None = None) -> list[PretrainedTag]:
    """The present weights of ``preset`` (at ``scale`` if given), registration order."""
    return [w for w in list_pretrained() if w.preset == preset
            and (scale is None or w.scale == scale)]


def list_archs() -> list[str]:
    _ensure_loaded()
    return sorted(_ARCHS)


def get_preset(name: str) -> Preset:
    _ensure_loaded()
    if name not in _PRESETS:
        raise ModelNotFoundError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_PRESETS))}"
        )
    return _PRESETS[name]


def get_arch(name: str) -> ArchEntry:
    _ensure_loaded()
    if name not in _ARCHS:
        raise ModelNotFoundError(f"unknown architecture {name!r}; known: {', '.join(_ARCHS)}")
    return _ARCHS[name]


def make_config(arch: str, values: Mapping[str, Any], where: str = "") -> Any:
    """Build ``arch``'s config from a mapping with the strict typed loader
    (:func:`attnsr.config.from_dict`): an unknown key or a wrong type is a
    :class:`ConfigError` naming ``<where or arch>.<key>``."""
    return from_dict(get_arch(arch).config_cls, dict(values), where or arch)


def build_model(arch: str, config: Any) -> torch.nn.Module:
    """Instantiate architecture ``arch`` from a config instance or mapping."""
    entry = get_arch(arch)
    if not isinstance(config, entry.config_cls):
        config = make_config(arch, config)
    return entry.model_cls(config)


def preset_config(name: str, scale: int = 4, **overrides: Any) -> Any:
    """The config of preset ``name`` at ``scale`` with ``overrides`` applied."""
    preset = get_preset(name)
    return make_config(preset.arch, {**preset.defaults, "scale": scale, **overrides}, name)


def tiny_overrides(name: str) -> dict[str, Any]:
    """The tiny test config of preset ``name``'s architecture (see :func:`register_arch`)."""
    return dict(get_arch(get_preset(name).arch).tiny)


def create_model(name: str, scale: int = 4, **overrides: Any) -> torch.nn.Module:
    """Create preset ``name`` for ``scale`` (randomly initialised).

    >>> m = create_model("rcan_small", scale=2)
    """
    preset = get_preset(name)
    return build_model(preset.arch, preset_config(name, scale, **overrides))


config_to_dict = to_dict  # the one serialiser (attnsr.config.to_dict)
