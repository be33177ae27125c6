"""Training configuration: frozen keyword-only dataclasses, loaded from YAML or TOML.

The dataclasses are the source of truth; a file only lists values. Loading checks every
key and type and names the offending key path (``optim.lr: expected float, got str
'abc'``). ``--set a.b=value`` overrides are parsed as safe YAML (never
``eval``). The scale lives in one place: :attr:`TrainConfig.scale`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from attnsr.config import from_dict, to_dict
from attnsr.data.degrade import DegradationConfig, check_config
from attnsr.errors import ConfigError
from attnsr.fs import atomic_write_bytes

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """The model to train: a registered preset ``name`` with ``overrides`` of its config
    (the scale comes from :attr:`TrainConfig.scale`), or a ``checkpoint`` (attnsr
    directory / ``.safetensors`` / official file) whose weights initialise the run.
    ``init_from`` (with ``name``) copies every tensor of another checkpoint whose name and
    shape match (e.g. an x4 body into an x2 model; the differently shaped tail stays
    freshly initialised). ``reparam``: train every dense 3x3 conv as a sum of branches
    (:func:`attnsr.layers.reparam.attach_reparam`: the kernel plus a 1x1 and a 1x1 -> 3x3
    -> 1x1 chain, added from zero) that is folded back into the one kernel on export: the
    exported model and its speed are the plain one's; only the optimisation differs."""

    name: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    init_from: str = ""
    reparam: bool = False


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """One training folder: HR images, optionally with pre-made LR images (``lr_dir``,
    DIV2K layout ``0001x4.png`` beside ``0001.png``), drawn with relative ``weight``."""

    hr_dir: str
    lr_dir: str = ""
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Training patches: ``patch_size`` is the LR side (the HR patch is ``patch_size * scale``).

    ``lr_cache``: make each LR image once from the whole (mod-cropped) HR image with the
    MATLAB uint8 bicubic path, exactly like the benchmark LR images; otherwise the HR patch
    is cropped first and downscaled on the fly (same uint8 path, borders mirrored at the
    patch edge instead of using the neighbouring pixels).
    ``skip_small``: leave out images smaller than the HR patch (default: an error).
    ``hr_scales``: scale augmentation of HR-only sources (VDSR's recipe for small sets):
    each HR image is also used downscaled by each factor in (0, 1) (MATLAB bicubic), as an
    extra image of its source with its own cached LR; ``[1.0]``: off.
    ``root``: folder that relative ``hr_dir``/``lr_dir`` paths are taken from (default:
    the working directory).
    ``degradation``: real-world degradation of the HR patches (blur, resize, noise, JPEG;
    :class:`attnsr.data.degrade.DegradationConfig`) instead of the MATLAB bicubic LR; HR-only
    sources only.
    """

    root: str = ""
    sources: list[SourceConfig] = field(default_factory=list)
    patch_size: int = 48
    augment: bool = True
    num_workers: int = 0
    lr_cache: bool = True
    skip_small: bool = False
    hr_scales: list[float] = field(default_factory=lambda: [1.0])
    degradation: DegradationConfig = field(default_factory=DegradationConfig)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Learning rate: linear warm-up over ``warmup_iters``, then cosine down to ``min_lr``
    at ``total_iters``, or multiplied by ``gamma`` at each of ``milestones``."""

    name: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_iters: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    min_lr: float = 1e-7


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """``name``: the pixel loss. ``space: ycbcr`` takes it on BT.601 Y, Cb and Cr (the
    papers' Y of ``attnsr.metrics``) with the chroma planes weighted ``chroma_weight``
    (``rgb``: on R, G and B alike); 1-channel images are compared as they are."""

    name: Literal["l1", "mse", "charbonnier"] = "l1"
    eps: float = 1e-3
    space: Literal["rgb", "ycbcr"] = "rgb"
    chroma_weight: float = 1.0


@dataclass(frozen=True, kw_only=True)
class EMAConfig:
    """Exponential moving average of the weights; ``warmup`` uses
    ``min(decay, (1 + t) / (10 + t))`` at update ``t`` so short runs are not dominated
    by the initial weights."""

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True


@dataclass(frozen=True, kw_only=True)
class ValConfig:
    """Validation every ``every`` iterations (0: never) on benchmark folders
    (``<set>/HR`` [+ ``<set>/LR_bicubic/X{s}``]) at the run's scale, with the EMA model.
    Relative ``sets`` are taken from ``root``; ``max_images`` (0: all) per set;
    ``degradation``: a preset of :data:`attnsr.data.degrade.PRESETS` (``mixed``, ...) that
    makes the LR images from the HR (as ``attnsr eval --degradation``); empty: bicubic."""

    every: int = 0
    root: str = ""
    sets: list[str] = field(default_factory=list)
    max_images: int = 0
    degradation: str = ""


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    every: int = 100
    tensorboard: bool = True
    jsonl: bool = True


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """``threads``: CPU intra-op threads (0: torch's default, one per core); on a shared
    machine fewer threads can be much faster. ``nonfinite``: what a NaN/inf loss does.
    ``channels_last``: weights and batches in NHWC memory order (convolutional networks
    train about 1.3x faster on CPU through oneDNN, and use the tensor cores better on GPU;
    the numbers agree with NCHW to float rounding)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    grad_accum: int = 1
    grad_clip: float = 0.0
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 1000
    nonfinite: Literal["stop", "skip"] = "stop"
    channels_last: bool = False


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole run. ``batch_size`` is global (split over ranks and accumulation steps)."""

    scale: int = 4
    total_iters: int = 100_000
    batch_size: int = 16
    run_dir: str = ""
    model: ModelRef = field(default_factory=ModelRef)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ---------------------------------------------------------------- files and overrides


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``2e-4`` as a float (YAML 1.2; PyYAML follows
    YAML 1.1, where a float needs a dot: ``2.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Safe YAML parsing (no object construction), YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a ``.yaml``/``.yml``/``.toml`` file (``{}`` if empty)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml" and tomllib is None:
        raise ConfigError(f"{path}: TOML configs need Python >= 3.11; use YAML")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else parse_yaml(text)
    except (yaml.YAMLError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: cannot parse: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed as safe YAML) to ``data`` in place.

    Integer components index lists: ``data.sources.0.weight=2``.
    """
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. optim.lr=2e-4")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: cannot parse the value: {exc}") from exc
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]))
    _assign(node, parts[-1], value, key)


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {path}: {path.rsplit('.', 1)[0]} is not a mapping")
    return node.setdefault(part, {})


def _assign(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, path)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"--set {path}: the parent is not a mapping")


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {path}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Read ``path`` (YAML or TOML), apply dotted ``overrides``, check and build the config."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_config_file(path))
    for assignment in overrides:
        apply_override(data, assignment)
    config = from_dict(TrainConfig, data)
    check_values(config)
    return config


def check_values(config: TrainConfig) -> None:
    """Value checks that types alone cannot express (ranges, consistency)."""
    positive = {
        "scale": config.scale, "total_iters": config.total_iters,
        "batch_size": config.batch_size, "data.patch_size": config.data.patch_size,
        "runtime.grad_accum": config.runtime.grad_accum, "log.every": config.log.every,
        "runtime.checkpoint_every": config.runtime.checkpoint_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if not config.model.name and not config.model.checkpoint:
        raise ConfigError("model: set model.name (a preset) or model.checkpoint")
    if config.loss.chroma_weight < 0:
        raise ConfigError(f"loss.chroma_weight: must be >= 0, got {config.loss.chroma_weight}")
    if not config.data.sources:
        raise ConfigError("data.sources: at least one training folder is needed")
    for i, src in enumerate(config.data.sources):
        if src.weight <= 0:
            raise ConfigError(f"data.sources[{i}].weight: must be positive, got {src.weight}")
    scales = config.data.hr_scales
    if not scales or any(not 0.0 < f <= 1.0 for f in scales) or len(set(scales)) < len(scales):
        raise ConfigError(f"data.hr_scales: distinct factors in (0, 1], got {scales}")
    if scales != [1.0]:
        paired = [i for i, src in enumerate(config.data.sources) if src.lr_dir]
        if paired:
            raise ConfigError(f"data.hr_scales: scale augmentation needs HR-only sources; "
                              f"data.sources[{paired[0]}] has an lr_dir")
    try:
        check_config(config.data.degradation)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if config.data.degradation.enabled:
        paired = [i for i, src in enumerate(config.data.sources) if src.lr_dir]
        if paired:
            raise ConfigError(f"data.degradation: real-world degradation needs HR-only "
                              f"sources; data.sources[{paired[0]}] has an lr_dir")
    from attnsr.data.degrade import PRESETS

    if config.val.degradation and config.val.degradation not in PRESETS:
        raise ConfigError(f"val.degradation: unknown preset {config.val.degradation!r}; "
                          f"known: {sorted(PRESETS)}")
    if not 0.0 <= config.ema.decay < 1.0:
        raise ConfigError(f"ema.decay: must be in [0, 1), got {config.ema.decay}")
    if config.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be positive, got {config.optim.lr}")
    if sorted(config.schedule.milestones) != config.schedule.milestones:
        raise ConfigError(f"schedule.milestones: must be increasing, got "
                          f"{config.schedule.milestones}")


def resolve(root: str, path: str) -> Path:
    """``path`` (``~`` expanded) under ``root`` unless it is absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or not root else Path(root).expanduser() / p


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    atomic_write_bytes(Path(path), text.encode("utf-8"))
