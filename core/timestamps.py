"""One timestamp parser: ISO 8601 text or epoch seconds/milliseconds -> epoch seconds (UTC)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from threefold.core.errors import DataError

MS_THRESHOLD = 100_000_000_000
"""Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973."""

EXAMPLE = "2024-05-01T09:30:00Z"


def parse_timestamp(value: object, *, name: str = "timestamp") -> float:
    """Seconds since the epoch (UTC) from ISO 8601 text or epoch seconds/milliseconds.

    Accepted: ISO 8601 text (naive means UTC; 'Z' and offsets are honoured), and epoch numbers
    or numeric text, read as milliseconds when >= MS_THRESHOLD. Raises DataError naming `name`,
    what was expected and what was found.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        found = repr(value) if isinstance(value, bool) or value is None else type(value).__name__
        raise DataError(
            f"{name} must be ISO 8601 text or epoch seconds/milliseconds, found {found}"
        )
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text, value, name)
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0:
        raise DataError(f"{name} must be a finite epoch time >= 0, found {value!r}")
    return number / 1000.0 if number >= MS_THRESHOLD else number


def _parse_iso(text: str, value: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DataError(
            f"{name} {value!r} is not ISO 8601 or epoch seconds/milliseconds "
            f"(expected e.g. {EXAMPLE})"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_timestamp_ms(value: object, *, name: str = "timestamp") -> int:
    """`parse_timestamp` as whole milliseconds (Kafka message timestamps), rounded."""
    return round(parse_timestamp(value, name=name) * 1000)
