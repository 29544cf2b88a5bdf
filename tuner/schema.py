"""Plain data <-> frozen dataclasses, with one-line errors that name the key.

YAML goes in through `yaml.safe_load` and `from_dict`, which rejects unknown keys, wrong
types and non-finite numbers; `to_dict` and `flatten` give the plain forms that files and
MLflow params hold. Nothing here knows RunConfig: tuner.config builds on it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from tuner.errors import ConfigError


def check(ok: bool, where: str, message: str) -> None:
    """Raise `ConfigError("where: message")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{where}: {message}")


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(d: dict[str, Any], prefix: str = "", keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nested mappings as `a.b.c: value`; mappings at a path ending in one of `keep` stay
    whole (a price table is one value, not one key per device)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        nested = isinstance(value, dict) and value and all(isinstance(k, str) for k in value)
        if nested and not path.endswith(keep or ("\0",)):
            out.update(flatten(value, path + ".", keep))
        elif isinstance(value, list) and value and all(_named(v) for v in value):
            for item in value:  # a list of named sections: one param per field, keyed by name
                fields = {k: v for k, v in item.items() if k != "name"}
                out.update(flatten(fields, f"{path}.{item['name']}.", keep))
        else:
            out[path] = value
    return out


def _named(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str)


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from plain data, naming the key of any unknown field or bad type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = coerce(hints[key], value, path)
    return cls(**kwargs)


def coerce(tp: Any, value: Any, path: str) -> Any:
    """`value` as type `tp` (dataclass, Literal, union, tuple, dict, scalar), or ConfigError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} has the wrong type")
    if origin is tuple:
        if isinstance(value, str | dict):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp)
        return {coerce(key_tp, k, path): coerce(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def field_type(cls: type, path: str) -> Any:
    """The declared type of the field at dotted `path` under dataclass `cls`."""
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{path}: unknown config key")
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: unknown config key")
        cls = hints[part]
    if dataclasses.is_dataclass(cls):
        raise ConfigError(f"{path}: is a section, not a value")
    return cls


def assign(data: dict[str, Any], path: str, value: Any) -> None:
    """Set dotted `path` in a nested plain dict."""
    *parents, leaf = path.split(".")
    for part in parents:
        data = data[part]
    data[leaf] = to_dict(value)


def load_yaml(path: str | Path) -> Any:
    """`yaml.safe_load` a file, turning a missing file or bad YAML into one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
