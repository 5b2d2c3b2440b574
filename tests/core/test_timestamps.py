"""One timestamp parser: ISO 8601 (naive = UTC), epoch seconds and milliseconds."""

from __future__ import annotations

import time

import pytest

from threefold.core.errors import DataError
from threefold.core.timestamps import MS_THRESHOLD, parse_timestamp, parse_timestamp_ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714556000, 1714556000000),
        ("1714556000.5", 1714556000500),
        (1714556100000, 1714556100000),
        ("2024-05-01T09:30:00Z", 1714555800000),
        ("2024-05-01T11:30:00+02:00", 1714555800000),
        ("2024-05-01T09:30:00", 1714555800000),
    ],
)
def test_timestamps_in_common_forms(value: object, expected: int) -> None:
    assert parse_timestamp_ms(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "", None, -5, True])
def test_unusable_timestamps_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp_ms(value)


def test_naive_iso_is_utc_not_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_timestamp("1970-01-01T00:01:00") == 60.0
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60, 60.0),
        ("60", 60.0),
        (1714550000123, 1714550000.123),
        ("1714550000123", 1714550000.123),
        (MS_THRESHOLD - 1, MS_THRESHOLD - 1.0),
        (MS_THRESHOLD, MS_THRESHOLD / 1000),
    ],
)
def test_milliseconds_are_detected_by_magnitude(value: object, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", r"published_at 'soon' is not ISO 8601 .*2024-05-01T09:30:00Z"),
        (True, "published_at must be ISO 8601 text or epoch seconds/milliseconds, found True"),
        ([1], "published_at must be ISO 8601 text or epoch seconds/milliseconds, found list"),
        (-1, "published_at must be a finite epoch time >= 0, found -1"),
        (float("nan"), "published_at must be a finite epoch time >= 0, found nan"),
    ],
)
def test_bad_values_name_the_field_and_what_was_expected(value: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_timestamp(value, name="published_at")
