"""One timestamp parser: ISO 8601 text or epoch seconds/milliseconds -> epoch seconds (UTC)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from threefold.core.errors import DataError

MS_THRESHOLD = 100_000_000_000
"""Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973."""

EPOCH_2000_S = 946_684_800
"""2000-01-01T00:00:00Z: a `not_before` for live data, where an epoch number before it is a
misreading (a date such as 20240501 taken for seconds, a year, seconds taken for
milliseconds), not a time. (Historical data sets such as MovieLens 100K predate it.)"""

EXAMPLE = "2024-05-01T09:30:00Z"
EPOCH_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # ASCII digits: not 1_000, not Arabic-Indic


def parse_timestamp(
    value: object, *, name: str = "timestamp", not_before: float | None = None
) -> float:
    """Seconds since the epoch (UTC) from ISO 8601 text or epoch seconds/milliseconds.

    Accepted: ISO 8601 text (naive means UTC; 'Z' and offsets are honoured; eight digits are
    a basic date, 20240501), and epoch numbers or text of ASCII digits, read as milliseconds
    when >= MS_THRESHOLD; an epoch number before `not_before` (e.g. EPOCH_2000_S) is refused
    as implausible. Raises DataError naming `name`, what was expected and what was found.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        found = repr(value) if isinstance(value, bool) or value is None else type(value).__name__
        raise DataError(
            f"{name} must be ISO 8601 text or epoch seconds/milliseconds, found {found}"
        )
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 8 or not EPOCH_TEXT.fullmatch(text):
            return _parse_iso(text, value, name)
        number = float(text)
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0:
        raise DataError(f"{name} must be a finite epoch time >= 0, found {value!r}")
    seconds = number / 1000.0 if number >= MS_THRESHOLD else number
    if not_before is not None and seconds < not_before:
        earliest = datetime.fromtimestamp(not_before, tz=timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        raise DataError(
            f"{name} {value!r} is not a plausible epoch time: epoch seconds or milliseconds "
            f"must be on or after {earliest} ({not_before:.0f} s); expected "
            f"ISO 8601 text (e.g. {EXAMPLE}) or epoch seconds/milliseconds"
        )
    return seconds


def _parse_iso(text: str, value: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DataError(
            f"{name} {value!r} is not ISO 8601 or epoch seconds/milliseconds "
            f"(expected e.g. {EXAMPLE}; epochs in ASCII digits)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_timestamp_ms(value: object, *, name: str = "timestamp") -> int:
    """`parse_timestamp` as whole milliseconds (Kafka message timestamps), rounded."""
    return round(parse_timestamp(value, name=name) * 1000)
