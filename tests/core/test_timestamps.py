"""One timestamp parser: ISO 8601 (naive = UTC), epoch seconds and milliseconds."""

from __future__ import annotations

import time

import pytest

from threefold.core.errors import DataError
from threefold.core.timestamps import (
    EPOCH_2000_S,
    MS_THRESHOLD,
    parse_timestamp,
    parse_timestamp_ms,
)


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
        (1714550000, 1714550000.0),
        ("1714550000", 1714550000.0),
        (1714550000123, 1714550000.123),
        ("1714550000123", 1714550000.123),
        (60, 60.0),
        ("60", 60.0),
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


@pytest.mark.parametrize("value", [EPOCH_2000_S, EPOCH_2000_S * 1000, "2000-01-01T00:00:00Z"])
def test_not_before_is_inclusive(value: object) -> None:
    assert parse_timestamp(value, not_before=EPOCH_2000_S) == EPOCH_2000_S


def test_an_eight_digit_text_is_an_iso_basic_date_not_an_epoch() -> None:
    """'20240501' read as epoch seconds was 1970-08-23: silently late, never counted."""
    assert parse_timestamp("20240501") == parse_timestamp("2024-05-01T00:00:00Z")


@pytest.mark.parametrize(
    "value",
    [
        20240501,  # a date written as a number: 1970-08-23 as epoch seconds
        "2024",  # a year: 1970-01-01T00:33:44
        2024,
        60,
        EPOCH_2000_S - 1,
        MS_THRESHOLD,  # 1e11 milliseconds is 1973
        EPOCH_2000_S * 1000 - 1,
    ],
)
def test_epoch_numbers_before_not_before_are_refused_as_implausible(value: object) -> None:
    with pytest.raises(DataError) as caught:
        parse_timestamp(value, name="published_at", not_before=EPOCH_2000_S)
    reason = str(caught.value)
    assert reason.startswith(f"published_at {value!r} is not a plausible epoch time")
    assert "on or after 2000-01-01T00:00:00Z" in reason
    assert "ISO 8601 text (e.g. 2024-05-01T09:30:00Z)" in reason


@pytest.mark.parametrize(
    "value",
    [
        "1_714_550_400",
        "\u0661\u0667\u0661\u0664\u0665\u0665\u0660\u0664\u0660\u0660",
        "\uff11\uff17\uff11\uff14\uff15\uff15\uff10\uff14\uff10\uff10",
        "1.7e9",
        "inf",
    ],
    ids=["underscores", "arabic-indic-digits", "fullwidth-digits", "exponent", "inf"],
)
def test_epoch_text_is_ascii_digits_only(value: str) -> None:
    """float() took these as epochs; a feed sending them has a bug to hear about."""
    with pytest.raises(DataError, match=r"published_at .* is not ISO 8601 or epoch seconds"):
        parse_timestamp(value, name="published_at")
