"""The one model registry.

Two levels, as in timm:
- *architectures*: a model class plus its frozen config dataclass
  (``register_arch``), optionally with a detector that recognises the
  architecture's official checkpoints from their state-dict keys;
- *presets*: named variants (``rcan``, ``rcan_small``, ``swinir_light`` ...) that
  fix some config fields (``register_preset``).

``create_model(name, scale=4, **overrides)`` builds a preset; ``list_models()``
lists the presets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attnsr.errors import ConfigError, ModelNotFoundError

# detector(state_dict) -> config kwargs (with scale) if the keys are this arch's, else None
Detector = Callable[[Mapping[str, torch.Tensor]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ArchEntry:
    name: str
    model_cls: type
    config_cls: type
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


_ARCHS: dict[str, ArchEntry] = {}
_PRESETS: dict[str, Preset] = {}


def register_arch(
    name: str,
    config_cls: type,
    *,
    detect: Detector | None = None,
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as architecture ``name`` with its config class."""

    def deco(cls: type) -> type:
        if name in _ARCHS and _ARCHS[name].model_cls is not cls:
            raise ValueError(f"architecture {name!r} registered twice")
        cls.arch_name = name
        _ARCHS[name] = ArchEntry(name, cls, config_cls, detect, convert)
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
    """Register a named preset of architecture ``arch`` with config ``defaults``."""
    if name in _PRESETS:
        raise ValueError(f"model {name!r} registered twice")
    _PRESETS[name] = Preset(name, arch, dict(defaults), description, tuple(scales))


def _ensure_loaded() -> None:
    # Importing the package registers every architecture (explicit imports there).
    import attnsr.models  # noqa: F401


def list_models() -> list[str]:
    """Names of all registered presets, sorted."""
    _ensure_loaded()
    return sorted(_PRESETS)


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


def make_config(arch: str, values: Mapping[str, Any]) -> Any:
    """Build ``arch``'s config from a mapping; unknown keys are a :class:`ConfigError`."""
    cfg_cls = get_arch(arch).config_cls
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{arch}: unknown config keys {unknown}; known: {sorted(known)}")
    vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    try:
        return cfg_cls(**vals)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{arch}: invalid config: {exc}") from exc


def build_model(arch: str, config: Any) -> torch.nn.Module:
    """Instantiate architecture ``arch`` from a config instance or mapping."""
    entry = get_arch(arch)
    if not isinstance(config, entry.config_cls):
        config = make_config(arch, config)
    return entry.model_cls(config)


def preset_config(name: str, scale: int = 4, **overrides: Any) -> Any:
    """The config of preset ``name`` at ``scale`` with ``overrides`` applied."""
    preset = get_preset(name)
    return make_config(preset.arch, {**preset.defaults, "scale": scale, **overrides})


def create_model(name: str, scale: int = 4, **overrides: Any) -> torch.nn.Module:
    """Create preset ``name`` for ``scale`` (randomly initialised).

    >>> m = create_model("rcan_small", scale=2)
    """
    preset = get_preset(name)
    return build_model(preset.arch, preset_config(name, scale, **overrides))


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}
