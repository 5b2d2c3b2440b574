"""Dead-letter records and message decoding errors."""

from __future__ import annotations

import base64
import json

import pytest

from threefold.streaming.dead_letter import dead_letter_record, error_reason
from threefold.streaming.messages import Message, ProcessingError


def _msg(value: bytes, key: bytes | None = b"k1") -> Message:
    return Message("news", 2, 41, key, value, 1_700_000_000_123)


def test_record_names_where_the_message_came_from_and_why_it_failed() -> None:
    record = dead_letter_record(_msg(b'{"text": "hi"}'), "missing field 'id'", now_ms=5)
    assert record == {
        "reason": "missing field 'id'",
        "error_type": "rejected",
        "source_topic": "news",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": 1_700_000_000_123,
        "failed_at_ms": 5,
        "key": "k1",
        "value": '{"text": "hi"}',
    }
    json.dumps(record)  # the record itself is valid JSON


def test_undecodable_bytes_are_kept_exactly() -> None:
    raw = b"\xff\xfeabc\x80"
    record = dead_letter_record(_msg(raw, key=None), "not UTF-8", "ProcessingError")
    assert record["key"] is None
    assert "\ufffd" in record["value"]
    assert base64.b64decode(record["value_base64"]) == raw


def test_very_long_reasons_are_clipped() -> None:
    record = dead_letter_record(_msg(b"x"), "e" * 10_000)
    assert len(record["reason"]) == 2000 and record["reason"].endswith("…")


def test_error_reason_prefers_the_processing_reason() -> None:
    assert error_reason(ProcessingError("bad id")) == ("bad id", "ProcessingError")
    assert error_reason(KeyError("text")) == ("'text'", "KeyError")
    assert error_reason(RuntimeError()) == ("RuntimeError", "RuntimeError")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"", "empty value"),
        (b"\xff", "not UTF-8 text"),
        (b"{not json", "invalid JSON: Expecting property name"),
        (b"[1, 2]", "expected a JSON object, found list"),
    ],
)
def test_message_json_rejects_what_is_not_a_json_object(value: bytes, match: str) -> None:
    with pytest.raises(ProcessingError, match=match) as caught:
        _msg(value).json()
    assert caught.value.retriable is False


def test_message_json_and_key_text() -> None:
    message = _msg('{"text": "zoë"}'.encode(), key=b"\xffk")
    assert message.json() == {"text": "zoë"}
    assert message.key_text() == "\ufffdk"
