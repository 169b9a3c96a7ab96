"""Strict conversion of parsed YAML to the schema's dataclasses, and back (for checkpoints).

As in nanoGPT's config overrides: an unknown key, a missing key or a wrong type is a
:class:`~ebm.errors.ParamsError` that names the key.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal

from ebm.errors import ParamsError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (int → float where a float is due)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is dict:  # a mapping checked elsewhere (named runs: ebm/config/runs.py)
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ParamsError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {_type_name(tp)} at {key}")  # a bug in this module


def build(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{key or 'params'}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{key}." if key else ""
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(f"unknown key {prefix}{unknown[0]!s} (allowed here: {', '.join(names)})")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ParamsError(f"missing key {prefix}{missing[0]}")
    return cls(**{n: _convert(raw[n], hints[n], prefix + n) for n in names})



def to_dict(obj: Any) -> Any:
    """Dataclass tree → plain dict (for checkpoints, which must load with ``weights_only=True``)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, raw: dict) -> Any:
    """Inverse of :func:`to_dict` for one section, with the same strict checks."""
    return build(cls, raw, cls.__name__)
