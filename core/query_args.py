"""Typed query-string arguments for Flask views; a bad value is a 400 ApiError naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

from flask import request

from threefold.core.web import ApiError

T = TypeVar("T", int, float)
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})
MAX_NUMBER_CHARS = 40
# ASCII only: Python's int()/float() also take "١٢", "1_000", " 5 ", "nan" and "inf".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _raw(name: str) -> str | None:
    """The argument's text, or None when it is absent or empty (the caller's default applies)."""
    raw = request.args.get(name)
    return None if raw is None or raw == "" else raw


def int_arg(name: str, default: int, *, low: int, high: int | None = None) -> int:
    """`?name=` as an integer in [low, high] (no upper bound when high is None)."""
    return _number_arg(name, default, int, "an integer (ASCII digits)", low, high, _INTEGER)


def float_arg(name: str, default: float, *, low: float, high: float) -> float:
    """`?name=` as a number in [low, high]."""
    return _number_arg(name, default, float, "a finite decimal number", low, high, _DECIMAL)


def _number_arg(
    name: str,
    default: T,
    convert: Callable[[str], T],
    kind: str,
    low: T,
    high: T | None,
    pattern: re.Pattern[str],
) -> T:
    raw = _raw(name)
    if raw is None:
        return default
    value = convert(raw) if len(raw) <= MAX_NUMBER_CHARS and pattern.fullmatch(raw) else None
    if value is None or not math.isfinite(value):
        raise ApiError(400, f"{name!r} must be {kind}, found {raw[:40]!r}", field=name)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(400, f"{name!r} must be {bounds}, found {raw}", field=name)
    return value


def bool_arg(name: str, default: bool) -> bool:
    """`?name=` as true (1/true/yes) or false (0/false/no), case-insensitive."""
    raw = _raw(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ApiError(400, f"{name!r} must be true or false, found {raw!r}", field=name)
