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
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object, found list"),
        ({"source": "wire"}, "field 'text' must be non-empty text, found missing"),
        ({"text": "   "}, "field 'text' must be non-empty text"),
        ({"text": "x", "published_at": "yesterday"}, "not ISO 8601"),
        ({"text": "x", "published_at": True}, "published_at must be ISO 8601"),
        ({"text": "x", "entities": "ACME"}, "'entities' must be a list"),
        ({"text": "x", "id": {"a": 1}}, "field 'id' must be text or an integer"),
        ({"text": "x" * 10_001}, "at most 10000"),
    ],
)
def test_bad_messages_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(")) as caught:
        parse(raw)
    assert caught.value.reason
