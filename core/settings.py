"""One settings loader for every entry point: environment variables -> frozen dataclasses.

Each app declares its settings as a frozen dataclass; `load_settings` reads `<PREFIX><FIELD>`
variables, converts them by the field's type annotation and applies keyword overrides (CLI
flags). Library code never reads the environment: entry points call `load_settings` once and
pass the result down. A field may name an unprefixed fallback variable with
`field(metadata={"env": "REDIS_URL"})`.

Conversions: `str`, `int`, `float`, `bool` (true/false/1/0/yes/no/on/off), `Path`, `Secret`,
`tuple[str, ...]` and `list[str]` (comma-separated), and `X | None` of those. An empty variable
means None for optional fields and "keep the default" for the others.

A `Secret` field named `*_token` (one bearer token) or `*_tokens` (`name:token,...`) guards an
API: a published placeholder or a short token there is refused (`core.named_tokens`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

from threefold.core.errors import ConfigError
from threefold.core.named_tokens import check_token_setting

T = TypeVar("T")

_SECRET_QUERY = re.compile(
    r"(^|[&;])((?:[\w.-]*_)?(?:password|passwd|pwd|secret|token|api_?key))=[^&;#]*", re.IGNORECASE
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Secret:
    """A string that never shows itself in str(), repr(), logs or tracebacks.

    `reveal()` returns the value for the one place that needs it (an auth header, a client).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise ConfigError(f"a secret must be a string, found {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def reveal(value: Secret | str | None) -> str | None:
    """The plain value of a secret setting (None stays None)."""
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else value


def safe_url(url: str | None) -> str:
    """`url` with any password replaced by `***` (for logs, `/healthz` and error messages).

    Masks the user-info password and secret query parameters (`?password=...`, which redis-py
    reads too); a URL too malformed to parse shows only its scheme.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        scheme = url.partition("://")[0] if "://" in url else ""
        return f"{scheme}://*** (malformed URL)" if scheme.isalnum() else "*** (malformed URL)"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}" if name else f"***@{host}"
    query = _SECRET_QUERY.sub(r"\1\2=***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def load_settings(
    settings_class: type[T],
    prefix: str,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> T:
    """Build `settings_class` from `<prefix><FIELD>` variables, then `overrides` (None = unset).

    Raises ConfigError naming the variable, the expected type and the value found.
    """
    if not dataclasses.is_dataclass(settings_class):
        raise ConfigError(f"{settings_class!r} is not a dataclass")
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(settings_class)
    spec = {f.name: f for f in dataclasses.fields(settings_class) if f.init}
    unknown = sorted(set(overrides) - set(spec))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} for {settings_class.__name__}; "
            f"expected some of {sorted(spec)}"
        )
    values: dict[str, Any] = {}
    for name, item in spec.items():
        variable = prefix + name.upper()
        raw = env.get(variable)
        fallback = item.metadata.get("env")
        if raw is None and fallback:
            variable, raw = fallback, env.get(fallback)
        if raw is None:
            continue
        converted = _convert(raw, hints[name], variable)
        if converted is not _KEEP_DEFAULT:
            values[name] = converted
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(value, hints[name], name)
    for name, value in values.items():
        if isinstance(value, Secret):
            check_token_setting(name, value.reveal(), prefix + name.upper())
    return settings_class(**values)


def coerce_fields(settings: object) -> None:
    """Convert a frozen settings object's field values to their annotated types, in place.

    Call first in `__post_init__`, so `Settings(token="x", folder="data")` holds a Secret and a
    Path just as `load_settings` would make them.
    """
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, item.name)
        if value is not None:
            object.__setattr__(settings, item.name, _coerce(value, hints[item.name], item.name))


def public_dict(settings: object) -> dict[str, Any]:
    """The settings as a dict safe to log or show: secrets as "***", URL passwords masked."""
    shown: dict[str, Any] = {}
    for item in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, item.name)
        if isinstance(value, Secret):
            value = "***" if value else ""
        elif isinstance(value, str) and "://" in value:
            value = safe_url(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        shown[item.name] = value
    return shown


_KEEP_DEFAULT = object()


def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _convert(raw: str, annotation: Any, variable: str) -> Any:
    inner, optional = _optional_inner(annotation)
    text = raw.strip()
    if not text:
        return None if optional else _KEEP_DEFAULT
    return _from_text(text, inner, variable)


def _from_text(text: str, kind: Any, variable: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return tuple(parts) if origin is tuple else parts
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{variable} must be true or false, found {text!r}")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # NaN passes every range check (comparisons are False)
            expected = "an integer" if kind is int else "a finite number"
            raise ConfigError(f"{variable} must be {expected}, found {text!r}")
        return value
    if kind is Path:
        return Path(text)
    if kind is Secret:
        return Secret(text)
    return text


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """An override from code or a CLI flag, converted where its type is plainly off."""
    inner, _ = _optional_inner(annotation)
    if isinstance(value, str) and inner is not str:
        return _from_text(value, inner, name)
    if inner is Path and not isinstance(value, Path):
        return Path(value)
    if inner is Secret and not isinstance(value, Secret):
        return Secret(value)
    if typing.get_origin(inner) is tuple and isinstance(value, list):
        return tuple(value)
    return value
