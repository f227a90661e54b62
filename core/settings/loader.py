"""Typed loading of settings: raw YAML mappings into frozen dataclasses.

The suite's own settings (:mod:`modelops.settings`) and a model repository's own sections (its
pipeline may use :func:`convert` too) go through here. The loader converts a raw YAML mapping
into dataclasses, rejecting unknown keys, wrong types and out-of-range values
with a :class:`~modelops.errors.ConfigError` that names the file, the field path and the bad value.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``Literal[...]``, ``list[T]``,
``tuple[T, ...]``, ``dict[str, T]``, ``T | None``, nested dataclasses, and any class with a
``from_params(raw, path, file)`` classmethod (for shapes a dataclass cannot say, such as Argo
canary steps). Constraints go in field metadata: ``field(metadata={"min": 1})`` (also ``max``,
``gt``, ``pattern``, ``choices``). A dataclass may define ``check(self, path, file)`` for
cross-field rules; it raises ConfigError.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from modelops.errors import MISSING, ConfigError

T = TypeVar("T")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def convert(tp: Any, raw: Any, path: str, file: str | Path | None) -> Any:
    """Convert ``raw`` (parsed YAML) into ``tp``, or raise ConfigError naming ``path``."""
    if isinstance(tp, str):
        raise TypeError(f"unresolved annotation {tp!r} at {path}")
    origin = get_origin(tp)
    if hasattr(tp, "from_params") and not dataclasses.is_dataclass(tp):
        return tp.from_params(raw, path, file)
    if origin is Literal:
        if raw not in get_args(tp) or isinstance(raw, bool) != any(
                isinstance(a, bool) for a in get_args(tp) if a == raw):
            raise ConfigError(file, path, raw, f"must be one of {_type_name(tp)}")
        return raw
    if origin in (types.UnionType, typing.Union):
        options = get_args(tp)
        if raw is None and type(None) in options:
            return None
        errors: list[ConfigError] = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, raw, path, file)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(file, path, raw, f"must be {_type_name(tp)}")
    if origin in (list, tuple):
        (item_tp, *_rest) = get_args(tp)
        if not isinstance(raw, list):
            raise ConfigError(file, path, raw, f"must be {_type_name(tp)}")
        items = [convert(item_tp, item, _join(path, i), file) for i, item in enumerate(raw)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if not isinstance(raw, dict):
            raise ConfigError(file, path, raw, "must be a mapping")
        out = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                raise ConfigError(file, _join(path, str(key)), key, "keys must be strings")
            out[key] = convert(value_tp, value, _join(path, key), file)
        return out
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, raw, path, file)
    if tp is bool:
        if not isinstance(raw, bool):
            raise ConfigError(file, path, raw, "must be true or false")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(file, path, raw, "must be an integer")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(file, path, raw, "must be a number")
        if not math.isfinite(raw):
            raise ConfigError(file, path, raw, "must be a finite number (not .nan or .inf)")
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise ConfigError(file, path, raw, "must be a string")
        return raw
    if tp is Any:
        return raw
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _check_constraints(meta: typing.Mapping[str, Any], value: Any, path: str,
                       file: str | Path | None) -> None:
    if value is None:
        return
    if "min" in meta and value < meta["min"]:
        raise ConfigError(file, path, value, f"must be at least {meta['min']}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(file, path, value, f"must be greater than {meta['gt']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(file, path, value, f"must be at most {meta['max']}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(file, path, value,
                          meta.get("pattern_help", f"must match {meta['pattern']}"))
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(map(str, meta["choices"]))
        raise ConfigError(file, path, value, f"must be one of {choices}")
    if "min_items" in meta and len(value) < meta["min_items"]:
        raise ConfigError(file, path, value, f"must have at least {meta['min_items']} item(s)")


def _convert_dataclass(tp: type[T], raw: Any, path: str, file: str | Path | None) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(file, path, raw, "must be a mapping")
    hints = typing.get_type_hints(tp, include_extras=False)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        close = closest(str(key), fields)
        raise ConfigError(file, _join(path, str(key)), raw[key], "unknown key",
                          hint=(f"did you mean {close!r}? " if close else "")
                          + f"known keys here: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name in raw:
            value = convert(hints[name], raw[name], sub, file)
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        else:
            raise ConfigError(file, sub, MISSING, "required key is missing")
        _check_constraints(f.metadata, value, sub, file)
        kwargs[name] = value
    obj = tp(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check(path, file)
    return obj


def closest(key: str, options: typing.Iterable[str], cutoff: float = 0.6) -> str | None:
    """The option most like ``key`` (for "did you mean ...?"), or None."""
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=cutoff)
    return match[0] if match else None
