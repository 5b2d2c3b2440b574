"""Dead-letter records: everything needed to find, understand and replay a failed message."""

from __future__ import annotations

import base64
import time
from typing import Any

from threefold.streaming.messages import Message

REJECTED = "rejected"
"""error_type of a message the processor returned in BatchResult.failed."""

MAX_REASON_CHARS = 2000


def dead_letter_record(
    message: Message, reason: str, error_type: str = REJECTED, *, now_ms: int | None = None
) -> dict[str, Any]:
    """The dead-letter value for `message`.

    Keys: reason, error_type (an exception class name, or "rejected"), source_topic, partition,
    offset, timestamp_ms (of the source message), failed_at_ms, key and value (UTF-8 text with
    invalid bytes replaced). When the value is not valid UTF-8 the exact bytes are kept too, in
    value_base64, so nothing is lost.
    """
    value_text = message.value.decode("utf-8", errors="replace")
    record: dict[str, Any] = {
        "reason": _clip(reason or "no reason given"),
        "error_type": error_type,
        "source_topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "failed_at_ms": int(time.time() * 1000) if now_ms is None else now_ms,
        "key": message.key_text(),
        "value": value_text,
    }
    if value_text.encode("utf-8") != message.value:
        record["value_base64"] = base64.b64encode(message.value).decode("ascii")
    return record


def error_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, error_type) for an exception raised while processing a message."""
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason), type(exc).__name__


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
