"""Parsing JSON from untrusted senders (HTTP bodies, Kafka messages) without crashing on it.

`loads_untrusted` refuses, with an `UntrustedJsonError` that says what and where: invalid JSON,
NaN/Infinity and numbers that overflow or have more digits than Python converts, a key given
twice in one object (parsers disagree on which one wins, so a duplicate can smuggle a value past
a check), nesting deeper than `max_depth`, and strings that are not valid Unicode (lone
surrogates such as "\\ud800", which fail later when encoded). The checks walk the value without
recursion, so a hostile document cannot overflow the stack.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

MAX_JSON_DEPTH = 32


class UntrustedJsonError(ValueError):
    """The document was refused; `path` is where (e.g. `$.user_id`), when known."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def loads_untrusted(
    raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON"
) -> Any:
    """The parsed value of `raw`; UntrustedJsonError naming `what` and the problem otherwise."""
    try:
        value = json.loads(
            raw,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_whole_number,
            object_pairs_hook=_object_without_duplicates,
        )
    except _Refused as exc:
        raise UntrustedJsonError(f"{what} was refused: {exc}") from None
    except RecursionError:
        raise UntrustedJsonError(
            f"{what} is nested deeper than {max_depth} levels (the parser's limit)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedJsonError(f"{what} is not valid JSON: {exc}") from None
    check_untrusted(value, max_depth=max_depth, what=what)
    return value


def check_untrusted(value: Any, *, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON") -> None:
    """Refuse an already parsed value nested deeper than `max_depth`, or with invalid Unicode.

    NaN/Infinity are refused at parse time by `loads_untrusted` only.
    """
    _check_value(value, max_depth=max_depth, what=what)


class _Refused(ValueError):
    """Raised by the parser's hooks: a value JSON allows but this parser does not take."""


def _refuse_constant(name: str) -> None:
    raise _Refused(f"{name} is not a number JSON allows; send a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text} is out of range for a number; send a finite number")
    return value


def _whole_number(text: str) -> int:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit and len(text.lstrip("-")) > limit:
        raise _Refused(
            f"a number has {len(text.lstrip('-'))} digits, more than the {limit} allowed; "
            "send it as a string"
        )
    return int(text)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {key!r} appears twice in one object; send each key once")
            seen.add(key)
    return value


def _check_value(value: Any, *, max_depth: int, what: str) -> None:
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, what, path)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise UntrustedJsonError(
                    f"{what} is nested deeper than {max_depth} levels (at {path})"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, what, f"{path}.{key!r}")
                    stack.append((child, depth + 1, f"{path}.{key}"))
            else:
                stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))


def _check_text(text: str, what: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UntrustedJsonError(
            f"{what} has a string that is not valid Unicode at {path} (a lone surrogate such "
            "as \\ud800); send UTF-8 text",
            path,
        ) from None
