"""The models a client may name, and one warm instance of each.

Clients name models, never files: a name is accepted only if it is a pretrained name or
alias whose weights are installed (:func:`attnsr.models.registry.list_pretrained`), or a
parameter-free baseline (``bicubic``). The accepted name then goes through the one
resolver (:class:`attnsr.inference.upscale.Upscaler` calls :func:`attnsr.resolver.resolve`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from attnsr import resolver
from attnsr.errors import AttnsrError
from attnsr.inference.upscale import Upscaler
from attnsr.models import registry
from attnsr.serve.errors import ApiError

BASELINES = {"bicubic": (2, 3, 4)}  # parameter-free presets offered for reference
DEFAULT_NAMES = ("", "default", "auto")
# output megapixels per second (256x256 input, 2 CPU threads) -> speed class
SPEED_CLASSES = ((2.0, "fast"), (0.5, "medium"), (0.0, "slow"))


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """One entry of ``GET /v1/models``.

    Attributes:
        name: what to send as ``model``; aliases are accepted too.
        scales: the factors it runs at.
        degradation: ``bicubic`` (clean downscales), ``real`` (photos: noise, JPEG) or
            ``none`` (a baseline without weights).
        speed_class: ``fast``, ``medium`` or ``slow`` on a CPU (``unknown`` if unmeasured).
        cpu_mp_per_s: measured output megapixels per second (256x256 in, 2 threads).
        denoise: whether ``denoise`` (0..1) applies (a clean/real-world pair ships).
        default_for: scales for which it is the model used when none is named.
    """

    name: str
    aliases: tuple[str, ...]
    scales: tuple[int, ...]
    degradation: str
    description: str
    speed_class: str
    cpu_mp_per_s: float | None
    params: int | None
    denoise: bool
    default_for: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Choice:
    """A validated model request: canonical name, scale, denoise strength (or None)."""

    name: str
    scale: int
    denoise: float | None


def speed_class(mp_per_s: float | None) -> str:
    if mp_per_s is None:
        return "unknown"
    return next(label for floor, label in SPEED_CLASSES if mp_per_s >= floor)


def _defaults() -> dict[str, list[int]]:
    """Model name -> the scales it is the default for."""
    out: dict[str, list[int]] = {}
    for scale in sorted({t.scale for t in registry.list_pretrained()}):
        out.setdefault(resolver.default_model(scale), []).append(scale)
    return out


def catalogue() -> list[ModelInfo]:
    """Every model a client may name: installed pretrained weights, then baselines."""
    defaults = _defaults()
    models = []
    for tag in registry.list_pretrained():
        results = tag.results()
        rate = results.get("cpu_mp_per_s_256")
        models.append(ModelInfo(
            name=tag.name, aliases=tuple(tag.aliases), scales=(tag.scale,),
            degradation=tag.degradation, description=tag.description,
            speed_class=speed_class(rate), cpu_mp_per_s=rate, params=results.get("params"),
            denoise=resolver.denoise_pair(tag) is not None,
            default_for=tuple(defaults.get(tag.name, ()))))
    for name, scales in BASELINES.items():
        models.append(ModelInfo(
            name=name, aliases=(), scales=scales, degradation="none",
            description="MATLAB-exact bicubic interpolation (reference, no model)",
            speed_class="fast", cpu_mp_per_s=None, params=0, denoise=False, default_for=()))
    return models


def _known() -> str:
    names = [t.aliases[0] if t.aliases else t.name for t in registry.list_pretrained()]
    return ", ".join([*names, *BASELINES])


def choose(model: str | None, scale: int | None, denoise: float | None) -> Choice:
    """Validate what a client asked for (never a path). Raises :class:`ApiError` 422."""
    name = (model or "").strip()
    if name.lower() in DEFAULT_NAMES:
        try:
            name = resolver.default_model(scale)
        except AttnsrError as exc:
            raise ApiError(422, "invalid_option", str(exc)) from None
    tag = registry.get_pretrained(name)
    if tag is not None and tag.available:
        if scale is not None and scale != tag.scale:
            raise ApiError(422, "invalid_option", f"model {name} upscales x{tag.scale}, but "
                           f"x{scale} was asked")
        chosen = Choice(tag.name, tag.scale, denoise)
    elif name in BASELINES:
        scale = resolver.DEFAULT_SCALE if scale is None else scale
        if scale not in BASELINES[name]:
            raise ApiError(422, "invalid_option", f"{name}: scale must be one of "
                           f"{', '.join(map(str, BASELINES[name]))}")
        chosen = Choice(name, scale, denoise)
    else:
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise ApiError(422, "unknown_model", f"unknown model {shown!r}; available: {_known()}")
    if denoise is not None:
        chosen = Choice(chosen.name, chosen.scale, round(float(denoise), 2))
    return chosen


class _Slot:
    """One cache entry: filled once, under its own lock (loads of other models go on)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.upscaler: Upscaler | None = None


class ModelPool:
    """One warm :class:`Upscaler` per (model, scale, denoise), at most ``max_models``
    (least recently used dropped first). Safe to share between worker threads: a
    runner keeps no per-call state (inference mode, no gradients)."""

    def __init__(self, *, tile: int | str = "auto", device: str = "auto",
                 max_models: int = 4) -> None:
        self.tile, self.device, self.max_models = tile, device, max_models
        self._lock = threading.Lock()
        self._slots: OrderedDict[Choice, _Slot] = OrderedDict()

    def get(self, choice: Choice) -> Upscaler:
        """The warm upscaler for ``choice``, loaded on first use (errors: AttnsrError)."""
        with self._lock:
            slot = self._slots.setdefault(choice, _Slot())
            self._slots.move_to_end(choice)
            while len(self._slots) > self.max_models:
                self._slots.popitem(last=False)
        with slot.lock:
            if slot.upscaler is None:
                try:
                    slot.upscaler = Upscaler(choice.name, scale=choice.scale,
                                             denoise=choice.denoise, tile=self.tile,
                                             device=self.device)
                except BaseException:
                    with self._lock:
                        if self._slots.get(choice) is slot:
                            del self._slots[choice]
                    raise
            return slot.upscaler

    def loaded(self) -> list[str]:
        with self._lock:
            return [f"{c.name} x{c.scale}" + (f" denoise {c.denoise}" if c.denoise is not None
                                              else "")
                    for c, s in self._slots.items() if s.upscaler is not None]
