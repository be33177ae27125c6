"""Saving and loading model weights.

Our format (docs/design.md): a directory with ``config.json`` + ``model.safetensors``, or
one ``.safetensors`` file; both carry the JSON
``{"format": "attnsr", "version": 1, "arch": ..., "name": ..., "config": {...}}``
(in the safetensors metadata under the key ``attnsr``), so the model is rebuilt from
the saved config, never guessed.

Official checkpoints (``.pth`` / ``.pt`` / plain ``.safetensors``) are read safely
(``torch.load(weights_only=True)``: no arbitrary code from pickles), unwrapped
(``params_ema`` / ``params`` / ``state_dict`` / ``model``), stripped of ``module.``
prefixes, and matched against every registered architecture's ``detect``.

Adding official-checkpoint support to an architecture: pass
``detect=fn`` (and, if the keys differ from ours, ``convert=fn``) to ``register_arch``.
``detect(state_dict)`` returns the config kwargs (``scale`` included when the shapes
tell it; otherwise leave it out and the caller's ``scale=`` or an ``x<N>`` in the file
name is used) or None when the keys are not that architecture's. When several
architectures claim a checkpoint, the one whose model has exactly the checkpoint's
keys wins.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.config import to_dict
from attnsr.errors import AttnsrError, CheckpointError, ConfigError, ModelNotFoundError
from attnsr.fs import atomic_write
from attnsr.models.registry import build_model, get_arch, list_archs
from attnsr.runner import Runner, describe

log = logging.getLogger(__name__)

FORMAT = "attnsr"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "attnsr"
# Wrapper keys of training checkpoints, in order of preference (EMA weights first).
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


# ----------------------------------------------------------------------------- blending


def blend_state_dicts(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]
                      ) -> dict[str, Tensor]:
    """``sum(w * state)`` over state dicts of one network (same keys and shapes): float
    tensors summed in float64 and cast back, other tensors (counters) taken from the first.
    The ``--denoise`` interpolation and ``tools/average_weights.py`` both blend this way."""
    if not states or len(states) != len(weights):
        raise ValueError(f"{len(states)} state dicts for {len(weights)} weights")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if set(state) != set(first) or any(state[k].shape != v.shape for k, v in first.items()):
            raise ValueError(f"source {i}: its tensors differ from source 0's")
    return {k: sum((w * s[k].double() for s, w in zip(states, weights, strict=True)),
                   torch.zeros((), dtype=torch.float64)).to(v.dtype)
            if v.is_floating_point() else v
            for k, v in first.items()}


# ----------------------------------------------------------------------------- saving


def checkpoint_metadata(model: nn.Module, name: str | None = None) -> dict[str, Any]:
    """The attnsr JSON header of ``model`` (an ``SRModel`` with ``config``)."""
    config = getattr(model, "config", None)
    arch = getattr(model, "arch_name", "")
    if config is None or not arch:
        raise CheckpointError(f"{type(model).__name__}: not a registered attnsr model")
    return {"format": FORMAT, "version": VERSION, "arch": arch, "name": name or arch,
            "config": to_dict(config)}


def _write_safetensors(path: Path, state: Mapping[str, Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta), "format": "pt"})


def save_pretrained(
    model: nn.Module | Runner,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` in the attnsr format; returns the path written.

    ``path`` ending in ``.safetensors``: one file (config in its metadata). Otherwise
    ``path`` is a directory receiving ``config.json`` and ``model.safetensors``.
    ``extra_metadata`` adds top-level JSON keys (it cannot replace the core ones).
    """
    if isinstance(model, Runner):
        name = name or model.name
        model = model.model
    meta = checkpoint_metadata(model, name)
    clash = sorted(set(extra_metadata or {}) & set(meta))
    if clash:
        raise ValueError(f"extra_metadata cannot override {clash}")
    meta.update(extra_metadata or {})
    path = Path(path)
    if path.suffix == ".safetensors":
        _write_safetensors(path, model.state_dict(), meta)
        return path
    path.mkdir(parents=True, exist_ok=True)
    _write_safetensors(path / WEIGHTS_FILE, model.state_dict(), meta)
    with atomic_write(path / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------- reading


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The attnsr header of a checkpoint directory or ``.safetensors`` file (None if it
    has none, e.g. an official checkpoint)."""
    path = Path(path)
    if path.is_dir():
        cfg = path / CONFIG_FILE
        if not cfg.is_file():
            return None
        try:
            return _check_header(json.loads(cfg.read_text()), cfg)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{cfg}: invalid JSON ({exc.msg}, line {exc.lineno})") from exc
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if raw is None:
        return None
    try:
        return _check_header(json.loads(raw), path)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid attnsr metadata ({exc.msg})") from exc


def _check_header(meta: Any, where: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not an attnsr checkpoint header (format != 'attnsr')")
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(f"{where}: checkpoint version {meta['version']} is newer than "
                              f"this attnsr (reads up to {VERSION}); upgrade attnsr")
    if "arch" not in meta or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{where}: attnsr header lacks 'arch' or 'config'")
    return meta


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_torch_checkpoint(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (no code execution)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / torch errors: all mean "cannot use this file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused or unreadable (only plain weight files load safely; "
            f"weights_only=True): {first[:200]}"
        ) from exc


def unwrap_state_dict(obj: Any, where: object = "") -> dict[str, Tensor]:
    """The flat ``name -> tensor`` dict inside a training checkpoint.

    Prefers ``params_ema`` over ``params``, ``state_dict``, ``model`` (nested wrappers
    are followed); strips ``module.`` prefixes (DataParallel); drops non-tensor entries.
    """
    for _ in range(4):  # a few nested wrappers at most
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: no state dict inside (got {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{where}: no tensors found in the checkpoint")
    return {_strip_prefix(k): v for k, v in tensors.items()}


def _strip_prefix(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


# -------------------------------------------------------------------------- detection


def _expected_shapes(arch: str, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """Key -> shape of ``arch`` built with ``config`` (on the meta device: no memory)."""
    try:
        with torch.device("meta"):
            model = build_model(arch, dict(config))
    except AttnsrError:
        return None
    except Exception:  # an architecture that cannot be built on meta: build it for real
        try:
            model = build_model(arch, dict(config))
        except AttnsrError:
            return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _scale_from_name(path: Path) -> int | None:
    """``x4`` in a file name (``RCAN_BIX4.pt``, ``PANx3_DF2K.pth``), or None."""
    found = re.findall(r"x([2348])(?![0-9])", path.stem.lower())
    return int(found[-1]) if found else None


def _resolve_scale(
    arch: str, config: dict[str, Any], scale: int | None, source: Path | None
) -> dict[str, Any]:
    """``config`` with its scale set: detected, else ``scale``, else from the file name."""
    detected = config.get("scale")
    if detected is not None and scale is not None and int(detected) != int(scale):
        raise CheckpointError(f"{source}: this {arch} checkpoint is x{detected}, not x{scale}")
    if detected is None:
        guess = scale if scale is not None else (_scale_from_name(source) if source else None)
        if guess is None:
            raise CheckpointError(f"{source}: cannot tell the scale of this {arch} checkpoint "
                                  "from its weights; pass the scale (scale=... / --scale)")
        config = {**config, "scale": int(guess)}
    return config


def detect_architecture(
    state_dict: Mapping[str, Tensor], *, scale: int | None = None, source: Path | None = None
) -> tuple[str, dict[str, Any], dict[str, Tensor]]:
    """Recognise an official checkpoint: ``(arch, config kwargs, converted state dict)``.

    Every registered ``detect`` is asked; among those that claim the keys, the first
    whose model has exactly these keys and shapes wins (else the first claimant, so the
    strict load reports the differences).
    """
    claims: list[tuple[str, dict[str, Any], dict[str, Tensor]]] = []
    for arch in list_archs():
        entry = get_arch(arch)
        if entry.detect is None:
            continue
        try:
            found = entry.detect(state_dict)
        except Exception as exc:  # a buggy detector must not hide the others
            log.debug("detect(%s) failed: %s", arch, exc)
            continue
        if found is not None:
            sd = entry.convert(dict(state_dict)) if entry.convert else dict(state_dict)
            claims.append((arch, dict(found), sd))
    if not claims:
        sample = ", ".join(sorted(state_dict)[:4])
        raise CheckpointError(f"{source}: no registered architecture recognises these weights "
                              f"(keys: {sample}, ...)")
    for arch, found, sd in claims:
        try:
            config = _resolve_scale(arch, found, scale, source)
        except CheckpointError:
            continue  # reported below if no other claimant fits
        if _expected_shapes(arch, config) == {k: tuple(v.shape) for k, v in sd.items()}:
            return arch, config, sd
    arch, found, sd = claims[0]
    return arch, _resolve_scale(arch, found, scale, source), sd


# ---------------------------------------------------------------------------- loading


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: object, strict: bool = True
) -> None:
    """Load with a one-line :class:`CheckpointError` naming a few bad keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict)
                   if tuple(own[k].shape) != tuple(state_dict[k].shape))
    problems = []
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint "
                        f"{tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})")
    if strict and missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:3])})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})")
    if problems:
        arch = getattr(model, "arch_name", type(model).__name__)
        raise CheckpointError(f"{source}: weights do not fit {arch}: " + "; ".join(problems))
    model.load_state_dict(dict(state_dict), strict=strict)


def _build(arch: str, config: Mapping[str, Any], source: object) -> nn.Module:
    try:
        return build_model(arch, dict(config))
    except ModelNotFoundError as exc:
        raise CheckpointError(f"{source}: unknown architecture {arch!r} (newer attnsr?)") from exc
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


def _from_header(
    meta: dict[str, Any], tensors: Mapping[str, Tensor], source: Path, scale: int | None,
    strict: bool,
) -> tuple[nn.Module, str]:
    config = meta["config"]
    if scale is not None and int(config.get("scale", scale)) != int(scale):
        raise CheckpointError(f"{source}: this model is x{config.get('scale')}, not x{scale}")
    model = _build(meta["arch"], config, source)
    load_state_dict_strict(model, tensors, source, strict)
    return model, str(meta.get("name") or meta["arch"])


def _load_dir(path: Path, scale: int | None, strict: bool) -> tuple[nn.Module, str]:
    weights = path / WEIGHTS_FILE
    meta = read_metadata(path)
    if meta is None or not weights.is_file():
        raise CheckpointError(f"{path}: not an attnsr checkpoint directory "
                              f"(needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    return _from_header(meta, _read_safetensors(weights), path, scale, strict)


def _load_official(
    tensors: Mapping[str, Tensor], path: Path, scale: int | None, strict: bool
) -> tuple[nn.Module, str]:
    arch, config, sd = detect_architecture(tensors, scale=scale, source=path)
    log.info("%s: detected %s %s", path, arch, config)
    model = _build(arch, config, path)
    load_state_dict_strict(model, sd, path, strict)
    return model, arch


def _embedded_header(obj: Any, path: Path) -> dict[str, Any] | None:
    """An attnsr header stored inside a torch checkpoint (``{"attnsr": {...}, ...}``)."""
    raw = obj.get(METADATA_KEY) if isinstance(obj, Mapping) else None
    if raw is None:
        return None
    try:
        return _check_header(json.loads(raw) if isinstance(raw, str) else raw, path)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid attnsr header ({exc.msg})") from exc


def _load_file(path: Path, scale: int | None, strict: bool) -> tuple[nn.Module, str]:
    if path.suffix == ".safetensors":
        tensors = _read_safetensors(path)
        meta = read_metadata(path)
        if meta is not None:
            return _from_header(meta, tensors, path, scale, strict)
        return _load_official(unwrap_state_dict(tensors, path), path, scale, strict)
    obj = read_torch_checkpoint(path)
    tensors = unwrap_state_dict(obj, path)
    meta = _embedded_header(obj, path)
    if meta is not None:
        return _from_header(meta, tensors, path, scale, strict)
    return _load_official(tensors, path, scale, strict)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    scale: int | None = None,
    strict: bool = True,
) -> Runner:
    """The torch :class:`~attnsr.runner.Runner` of a checkpoint file or directory (on the
    CPU, eval mode): an attnsr directory (``config.json`` + ``model.safetensors``), an
    attnsr or official ``.safetensors``, or an official ``.pth``/``.pt`` (architecture and
    hyper-parameters detected from its keys). Names are :func:`attnsr.resolver.resolve`'s
    business; this reads files only.

    ``scale`` checks the checkpoint's scale, or supplies it where the weights cannot
    tell (PAN x2 vs x3). Raises :class:`ModelNotFoundError` for a missing path and
    :class:`CheckpointError` for an unusable checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        model, name = _load_dir(path, scale, strict)
    elif path.is_file():
        model, name = _load_file(path, scale, strict)
    else:
        raise ModelNotFoundError(f"{path}: no such checkpoint file or directory")
    return describe(model, name=name, source=str(path))
