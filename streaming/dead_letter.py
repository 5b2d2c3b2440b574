"""Dead-letter records: everything needed to find, understand and replay a failed message.

A record must fit the broker's message size limit (`max.message.bytes`, ~1 MB by default) or the
dead letter itself fails and the consumer cannot move past the message. `encode_dead_letter`
keeps the whole value when it fits; otherwise it keeps the value's size, its sha256 and as long
a prefix as fits, and says so with `truncated: true`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from threefold.streaming.messages import Headers, Message
from threefold.streaming.producer import encode_json

REJECTED = "rejected"
"""error_type of a message the processor returned in BatchResult.failed."""

MAX_REASON_CHARS = 2000
MAX_KEY_CHARS = 1000
DEFAULT_MAX_DEAD_LETTER_BYTES = 900_000
"""Below Kafka's default max.message.bytes (1,048,588) and max_request_size (1,048,576), with
room for the record's key, headers and batch overhead."""
MIN_DEAD_LETTER_BYTES = 4096


def dead_letter_record(
    message: Message, reason: str, error_type: str = REJECTED, *, now_ms: int | None = None
) -> dict[str, Any]:
    """The dead-letter value for `message`, before any size limit.

    Keys: reason, error_type (an exception class name, or "rejected"), source_topic, partition,
    offset, timestamp_ms (of the source message), failed_at_ms, key, headers when the message
    had any ([name, value] pairs, values as text) and value (UTF-8 text with invalid bytes
    replaced). When the value is not valid UTF-8 the exact bytes are kept too, in value_base64,
    so nothing is lost.
    """
    value_text = message.value.decode("utf-8", errors="replace")
    record: dict[str, Any] = {
        "reason": _clip(reason or "no reason given", MAX_REASON_CHARS),
        "error_type": error_type,
        "source_topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "failed_at_ms": int(time.time() * 1000) if now_ms is None else now_ms,
        "key": message.key_text(),
        "value": value_text,
    }
    if message.headers:
        record["headers"] = header_pairs(message.headers)
    if value_text.encode("utf-8") != message.value:
        record["value_base64"] = base64.b64encode(message.value).decode("ascii")
    return record


def encode_dead_letter(
    message: Message,
    reason: str,
    error_type: str = REJECTED,
    *,
    max_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES,
    now_ms: int | None = None,
) -> bytes:
    """The dead-letter value as JSON of at most `max_bytes` bytes.

    A record over the limit keeps everything but the value, which is replaced by value_bytes
    (its original size), value_sha256, and value_prefix (text) or value_prefix_base64 (when
    the value is not UTF-8) holding its first bytes; `truncated` is then true.
    """
    record = dead_letter_record(message, reason, error_type, now_ms=now_ms)
    encoded = encode_json(record)
    if len(encoded) <= max_bytes:
        return encoded
    binary = "value_base64" in record
    for name in ("value", "value_base64"):
        record.pop(name, None)
    record["key"] = None if record["key"] is None else _clip(record["key"], MAX_KEY_CHARS)
    record.update(
        truncated=True,
        value_bytes=len(message.value),
        value_sha256=hashlib.sha256(message.value).hexdigest(),
    )
    room = max(0, max_bytes - len(encode_json(record)) - 64)
    # JSON escaping can grow text up to 6x (\u0000); base64 grows bytes by 4/3.
    size = room * 3 // 4 if binary else room
    while True:
        prefix = message.value[:size]
        if binary:
            record["value_prefix_base64"] = base64.b64encode(prefix).decode("ascii")
        else:
            record["value_prefix"] = prefix.decode("utf-8", errors="ignore")
        encoded = encode_json(record)
        if len(encoded) <= max_bytes or size == 0:
            return encoded
        size //= 2


def header_pairs(headers: Headers) -> list[list[str]]:
    """Headers as JSON-friendly [name, value] pairs (values as text, invalid UTF-8 replaced)."""
    return [[name, (value or b"").decode("utf-8", errors="replace")] for name, value in headers]


def error_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, error_type) for an exception raised while processing a message."""
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason), type(exc).__name__


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
