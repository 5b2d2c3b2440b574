"""Typed query-string arguments for Flask views; a bad value is a 400 ApiError naming the field."""

from __future__ import annotations

from flask import request

from threefold.core.web import ApiError

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


def _raw(name: str) -> str | None:
    """The argument's text, or None when it is absent or empty (the caller's default applies)."""
    raw = request.args.get(name)
    return None if raw is None or raw == "" else raw


def int_arg(name: str, default: int, *, low: int, high: int | None = None) -> int:
    """`?name=` as an integer in [low, high] (no upper bound when high is None)."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name!r} must be an integer, found {raw!r}", field=name) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(400, f"{name!r} must be {bounds}, found {value}", field=name)
    return value


def float_arg(name: str, default: float, *, low: float, high: float) -> float:
    """`?name=` as a number in [low, high]."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name!r} must be a number, found {raw!r}", field=name) from None
    if not low <= value <= high:
        raise ApiError(400, f"{name!r} must be between {low} and {high}, found {raw}", field=name)
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
