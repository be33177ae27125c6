"""Typed configuration: frozen keyword-only dataclasses built from plain mappings.

One loader for every config of the project (training configs, architecture configs):
:func:`from_dict` checks every key and type and names the offending key path
(``optim.lr: expected float, got str 'abc'``, ``attnsr_lite.attention: expected bool, got
str 'no'``); unknown keys are errors. :func:`to_dict` is the one serialiser (tuples become
lists, ready for JSON/YAML).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from attnsr.errors import ConfigError


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists -> tuples etc.)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        for arg in args:
            try:
                return _convert(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {tp}, got {_describe(value)}")
    if origin in (list, tuple, dict):
        return _convert_container(origin, args, value, path)
    return _convert_scalar(tp, value, path)


def _convert_container(origin: type, args: tuple[Any, ...], value: Any, path: str) -> Any:
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in pairs)
    return [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]


def _convert_scalar(tp: type, value: Any, path: str) -> Any:
    # bool is an int subclass in Python: reject it where a number is expected.
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: expected {tp.__name__}, got {_describe(value)}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    where = path or "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{key}: unknown key; known keys here: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a required field is missing / a value check
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """Plain (YAML/JSON-ready) dict of a config dataclass; tuples become lists."""

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(config))
