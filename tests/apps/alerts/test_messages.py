from __future__ import annotations

import json

import pytest

from threefold.apps.alerts.messages import InvalidMessage, derive_id, parse_message
from threefold.core.timestamps import parse_timestamp

KAFKA_TIME = 1_700_000_000.0


def parse(value) -> object:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_message(raw, fallback_time=KAFKA_TIME)


def test_full_message_keeps_fields_and_extra_keys():
    item = parse(
        {
            "id": 7,
            "text": " Helios Airlines cancels flights ",
            "source": "wire",
            "published_at": "2024-05-01T09:30:00Z",
            "entities": ["$hlx"],
            "lang": "en",
        }
    )
    assert item.id == "7"
    assert item.text == "Helios Airlines cancels flights"
    assert item.event_time == parse_timestamp("2024-05-01T09:30:00+00:00")
    assert item.entities == ["HLX"]
    assert item.to_dict()["lang"] == "en"


def test_missing_id_is_derived_deterministically_from_text_source_and_time():
    body = {"text": "Marlow Foods recalls cereal", "source": "wire", "published_at": 1714550000}
    first, again = parse(body), parse(dict(body))
    assert first.id == again.id == derive_id("Marlow Foods recalls cereal", "wire", "1714550000")
    assert parse({**body, "source": "blog"}).id != first.id


def test_missing_published_at_falls_back_to_the_kafka_timestamp():
    item = parse({"text": "Northwind Bank fined"})
    assert item.event_time == KAFKA_TIME
    assert item.published_at == "2023-11-14T22:13:20Z"


def test_epoch_milliseconds_are_understood():
    assert parse({"text": "x", "published_at": 1714550000123}).event_time == pytest.approx(
        1714550000.123
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, found list"),
        ({"source": "wire"}, "field 'text' must be non-empty text, found missing"),
        ({"text": "   "}, "field 'text' must be non-empty text"),
        ({"text": "x", "published_at": "yesterday"}, "not ISO 8601"),
        ({"text": "x", "published_at": True}, "published_at must be ISO 8601"),
        (
            {"text": "x", "published_at": 20240501},
            "published_at 20240501 is not a plausible epoch time: .* ISO 8601 text",
        ),
        ({"text": "x", "entities": "ACME"}, "'entities' must be a list"),
        ({"text": "x", "id": {"a": 1}}, "field 'id' must be text or an integer"),
        ({"text": "x" * 10_001}, "at most 10000"),
    ],
)
def test_bad_messages_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(")) as caught:
        parse(raw)
    assert caught.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"text": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than"),
        (b'{"text": "x", "a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32"),
        (b'{"text": "x", "score": NaN}', "NaN is not a number JSON allows"),
        (b'{"text": "x", "score": -Infinity}', "-Infinity is not a number JSON allows"),
        (b'{"text": "x", "score": 1e999}', "1e999 is out of range"),
        (b'{"text": "x", "n": ' + b"9" * 5000 + b"}", "a number has 5000 digits"),
        (b'{"id": "s", "text": "a\\ud800b"}', "not valid Unicode"),
        (b'{"text": "x", "published_at": ' + b"9" * 400 + b"}", "'published_at' is out of range"),
        (b'{"text": "x", "published_at": 1e300}', "'published_at' is out of range"),
        (b'{"text": "x", "published_at": "1e300"}', "published_at '1e300' is not ISO 8601"),
    ],
)
def test_hostile_json_is_an_invalid_message_not_a_crash(raw, reason):
    """Each of these raised RecursionError, OverflowError, ValueError or passed NaN through to
    the scored topic; the runner then retried the whole batch and dead-lettered the message as
    that exception, or counted it in the windows before its output failed."""
    with pytest.raises(InvalidMessage, match=reason):
        parse(raw)


def test_a_kafka_timestamp_out_of_range_is_an_invalid_message():
    with pytest.raises(InvalidMessage, match="the Kafka timestamp is out of range"):
        parse_message(b'{"text": "x"}', fallback_time=-9_223_372_036_854_775.808)


def test_event_times_after_not_after_are_refused_with_the_field_named():
    body = {"text": "x", "published_at": "2999-01-01T00:00:00Z"}
    with pytest.raises(InvalidMessage, match=r"field 'published_at' .* is later than"):
        parse_message(json.dumps(body).encode(), fallback_time=KAFKA_TIME, not_after=KAFKA_TIME)
    with pytest.raises(InvalidMessage, match=r"the Kafka timestamp .* is later than"):
        parse_message(b'{"text": "x"}', fallback_time=KAFKA_TIME + 1, not_after=KAFKA_TIME)
    ok = parse_message(json.dumps(body).encode(), fallback_time=KAFKA_TIME)
    assert ok.published_at == "2999-01-01T00:00:00Z"  # no limit without not_after


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"text": "x", "id": "i" * 201}, "field 'id' has 201 characters, at most 200"),
        ({"text": "x", "id": 10**201}, "field 'id' has 202 characters, at most 200"),
        ({"text": "x", "source": "s" * 201}, "field 'source' has 201 characters, at most 200"),
        (
            {"text": "x", "published_at": " " * 60 + "2024-05-01T09:30:00Z"},
            "field 'published_at' has 80 characters, at most 64",
        ),
        (
            {"text": "x", "entities": ["A" * 65]},
            "field 'entities' has an item of 65 characters, at most 64",
        ),
        ({"text": "x", "entities": ["A"] * 51}, "field 'entities' has 51 items, at most 50"),
        (
            {"text": "x", "lang": "en", "blob": "b" * 16_400},
            "have 16423 bytes of JSON in all, at most 16384 \\(the largest: 'blob', 16402 bytes\\)",
        ),
    ],
    ids=["id", "integer-id", "source", "published_at", "entity", "entities", "extra"],
)
def test_every_field_has_a_limit_named_with_what_was_found(body, reason):
    """Unbounded, a 500 000-character id or source filled /api/headlines (and could not be
    corrected: the corrections API takes ids of 200 characters at most), an entity became a
    100 KB Redis key and an extra field passed 900 KB on to the scored topic."""
    with pytest.raises(InvalidMessage, match=reason):
        parse(body)


def test_a_message_at_every_limit_is_accepted_and_its_output_stays_small():
    from threefold.apps.alerts import messages

    body = {
        "id": "i" * messages.MAX_ID_CHARS,
        "text": "\U0001f4c8" * messages.MAX_TEXT_CHARS,  # 4 bytes each in UTF-8
        "source": "s" * messages.MAX_SOURCE_CHARS,
        "published_at": "2024-05-01T09:30:00Z",
        "entities": [f"$ABCD{chr(65 + i // 26)}{chr(65 + i % 26)}.XY" for i in range(50)],
        "blob": "b" * (messages.MAX_EXTRA_BYTES - len('{"blob":""}')),
    }
    item = parse(body)
    output = json.dumps(item.to_dict(), ensure_ascii=False).encode()
    assert len(output) < 100_000  # a scored output always fits a Kafka record (1 MB)


def test_a_message_over_the_size_limit_is_refused_before_parsing():
    raw = json.dumps({"text": "x", "pad": " " * 300_000}).encode()
    with pytest.raises(InvalidMessage, match=r"message has 300\d{3} bytes, at most 262144"):
        parse(raw)


def test_given_entities_are_normalised_tickers():
    item = parse({"text": "x", "entities": [" $brk.b ", "hlx", "", "HLX"]})
    assert item.entities == ["BRK.B", "HLX", "HLX"]


@pytest.mark.parametrize("bad", ["$", "not a ticker", "BRK-B", "ABCDEFG", "Ğ", "ß", "A.BCD", "$$A"])
def test_a_given_entity_that_is_not_a_ticker_dead_letters_the_message(bad):
    """'$' became the aggregation key 'entity:', which the dashboard's API then refused."""
    with pytest.raises(InvalidMessage) as caught:
        parse({"text": "x", "entities": ["ACME", bad]})
    assert caught.value.reason == (
        f"field 'entities' has {bad!r}, not a ticker: expected 1-6 letters with an optional "
        "'.X' class suffix and an optional leading '$' (e.g. 'ACME', '$BRK.B')"
    )


def test_by_default_a_headline_stamped_an_hour_ahead_is_dead_lettered():
    """A feed sending local time (CET read as UTC) is refused, so the dead-letter topic shows
    its clock problem, instead of its headlines counting in windows an hour away."""
    from threefold.apps.alerts.config import AlertsConfig

    not_after = KAFKA_TIME + AlertsConfig().max_future_s
    ahead = {"text": "x", "published_at": KAFKA_TIME + 3500}
    with pytest.raises(InvalidMessage, match=r"later than .* max_future_s"):
        parse_message(json.dumps(ahead).encode(), fallback_time=KAFKA_TIME, not_after=not_after)
    skewed = {"text": "x", "published_at": KAFKA_TIME + 90}  # a drifting clock: accepted
    assert parse_message(json.dumps(skewed).encode(), fallback_time=KAFKA_TIME, not_after=not_after)
