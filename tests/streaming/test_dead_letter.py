"""Dead-letter records and message decoding errors."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from threefold.streaming.dead_letter import (
    dead_letter_record,
    encode_dead_letter,
    error_reason,
)
from threefold.streaming.messages import Message, ProcessingError


def _msg(value: bytes, key: bytes | None = b"k1", headers=()) -> Message:
    return Message("news", 2, 41, key, value, 1_700_000_000_123, headers)


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


def test_a_small_dead_letter_is_encoded_whole() -> None:
    message = _msg(b'{"text": "hi"}')
    encoded = encode_dead_letter(message, "bad", now_ms=5)
    assert json.loads(encoded) == dead_letter_record(message, "bad", now_ms=5)


def test_an_oversized_dead_letter_keeps_size_hash_reason_and_a_prefix() -> None:
    value = ('{"text": "' + "zoë " * 500_000 + '"}').encode()  # ~2.5 MB
    encoded = encode_dead_letter(_msg(value), "text too long", "ProcessingError", max_bytes=50_000)
    assert len(encoded) <= 50_000
    record = json.loads(encoded)
    assert record["truncated"] is True
    assert record["value_bytes"] == len(value)
    assert record["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert record["reason"] == "text too long" and record["error_type"] == "ProcessingError"
    assert (record["source_topic"], record["partition"], record["offset"]) == ("news", 2, 41)
    assert len(record["value_prefix"]) > 10_000
    assert value.decode().startswith(record["value_prefix"])
    assert "value" not in record and "value_base64" not in record


def test_an_oversized_binary_dead_letter_keeps_a_base64_prefix() -> None:
    value = bytes(range(256)) * 1200  # 300 KB, not UTF-8
    encoded = encode_dead_letter(_msg(value), "not UTF-8", max_bytes=100_000)
    assert len(encoded) <= 100_000
    record = json.loads(encoded)
    prefix = base64.b64decode(record["value_prefix_base64"])
    assert len(prefix) > 50_000 and value.startswith(prefix)
    assert record["value_sha256"] == hashlib.sha256(value).hexdigest()


def test_control_characters_that_grow_when_escaped_still_fit() -> None:
    value = b"\x00" * 200_000  # each byte becomes \u0000 (6 bytes) in JSON
    encoded = encode_dead_letter(_msg(value), "bad", max_bytes=100_000)
    assert len(encoded) <= 100_000
    assert json.loads(encoded)["value_bytes"] == 200_000


def test_headers_are_kept_in_the_dead_letter() -> None:
    message = _msg(b"x", headers=(("trace-id", b"t-1"), ("bin", b"\xff")))
    assert dead_letter_record(message, "bad")["headers"] == [["trace-id", "t-1"], ["bin", "\ufffd"]]


def test_error_reason_prefers_the_processing_reason() -> None:
    assert error_reason(ProcessingError("bad id")) == ("bad id", "ProcessingError")
    assert error_reason(KeyError("text")) == ("'text'", "KeyError")
    assert error_reason(RuntimeError()) == ("RuntimeError", "RuntimeError")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"", "empty value"),
        (b"\xff", "not UTF-8 text"),
        (b"{not json", "not valid JSON: Expecting property name"),
        (b"[1, 2]", "expected a JSON object, found list"),
        # the same refusal whether the parser (Python < 3.12) or the depth check (3.12) stops it
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "message is nested deeper than 32 levels"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "message is nested deeper than 32 levels"),
        (b'{"text": "\\ud800"}', "not valid Unicode at"),
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
