"""Parse and validate incoming news messages (step 1 of parse -> score -> aggregate -> decide).

Every field has a limit, so that one message cannot fill the dashboard or Redis (an entity is a
Redis key) and its scored output always fits a Kafka record (well under 1 MB):

| field | limit |
| --- | --- |
| the whole message | MAX_MESSAGE_BYTES (256 KiB) of UTF-8 JSON |
| `text` | MAX_TEXT_CHARS (10 000) characters |
| `id` | MAX_ID_CHARS (200) characters, as the dashboard's corrections API takes them |
| `source` | MAX_SOURCE_CHARS (200) characters |
| `published_at` | MAX_PUBLISHED_AT_CHARS (64) characters when text |
| `entities` | MAX_ENTITIES (50) tickers such as '$BRK.B' (`entities.as_ticker`) |
| any other fields | MAX_EXTRA_BYTES (16 KiB) together, as compact UTF-8 JSON |

A message over a limit is an InvalidMessage whose reason names the field, the limit and what
was found; the consumer dead-letters it before scoring, so it is never counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from threefold.apps.alerts.entities import MAX_ENTITIES, as_ticker
from threefold.core.errors import DataError
from threefold.core.timestamps import EPOCH_2000_S, parse_timestamp
from threefold.core.untrusted_json import UntrustedJsonError, check_untrusted, loads_untrusted

MAX_MESSAGE_BYTES = 262_144
MAX_TEXT_CHARS = 10_000
MAX_ID_CHARS = 200
MAX_SOURCE_CHARS = 200
MAX_PUBLISHED_AT_CHARS = 64

MAX_ENTITY_CHARS = 64
MAX_EXTRA_BYTES = 16_384
KNOWN_FIELDS = ("id", "text", "source", "published_at", "entities")


class InvalidMessage(ValueError):
    """A message that can never be processed; `reason` says what was expected and found."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class NewsItem:
    """One validated input message; `event_time` is seconds since the epoch (UTC)."""

    id: str
    text: str
    event_time: float
    source: str = ""
    published_at: str = ""
    entities: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The input fields as they travel on to the scored topic."""
        out: dict[str, object] = dict(self.extra)
        out.update(
            id=self.id,
            text=self.text,
            source=self.source,
            published_at=self.published_at,
            entities=list(self.entities),
        )
        return out


def derive_id(text: str, source: str, published_at: str) -> str:
    """Deterministic id for messages without one: the same headline replayed gets the same id."""
    digest = hashlib.sha256("\x1f".join((text, source, published_at)).encode("utf-8"))
    return "n-" + digest.hexdigest()[:24]


def format_time(seconds: float) -> str:
    """ISO 8601 UTC with a trailing Z, second precision."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _loads(raw: bytes | str) -> object:
    """JSON of untrusted bytes: InvalidMessage (never another error) for anything unusable."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message has {size} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"message is not UTF-8 text: {exc.reason}") from None
    try:
        return loads_untrusted(text, what="message")
    except UntrustedJsonError as exc:
        raise InvalidMessage(str(exc)) from None


def _event_time(published: object, fallback_time: float, not_after: float | None) -> float:
    """The event time of `published_at`, else of the Kafka timestamp; at most `not_after`."""
    from_kafka = published is None or published == ""
    what = "the Kafka timestamp" if from_kafka else "field 'published_at'"
    found = fallback_time if from_kafka else published
    try:
        event_time = (
            found
            if from_kafka
            else parse_timestamp(found, name="published_at", not_before=EPOCH_2000_S)
        )
        format_time(event_time)  # within the years datetime can represent
    except DataError as exc:
        raise InvalidMessage(str(exc)) from None
    except (OverflowError, ValueError, OSError):
        raise InvalidMessage(f"{what} is out of range, found {str(found)[:40]!r}") from None
    if not_after is not None and event_time > not_after:
        raise InvalidMessage(
            f"{what} ({format_time(event_time)}) is later than {format_time(not_after)}, the "
            "consumer's clock plus max_future_s: it would close every open window"
        )
    return event_time


def parse_message(
    raw: bytes | str | dict, *, fallback_time: float, not_after: float | None = None
) -> NewsItem:
    """Validate one message; `fallback_time` (the Kafka timestamp) is used without published_at.

    Raises InvalidMessage naming the field, what was expected and what was found: also for
    JSON nested deeper than MAX_JSON_DEPTH, NaN/Infinity, invalid Unicode, and an event time
    after `not_after` (a far-future time would move the watermark past every open window).
    """
    data = raw if isinstance(raw, dict) else _loads(raw)
    try:
        check_untrusted(data, what="message")  # a dict handed over was not parsed here
    except UntrustedJsonError as exc:
        raise InvalidMessage(str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"message must be a JSON object, found {type(data).__name__}")
    body = data.get("text")
    if not isinstance(body, str) or not body.strip():
        found = "missing" if "text" not in data else repr(body)[:60]
        raise InvalidMessage(f"field 'text' must be non-empty text, found {found}")
    _check_length("text", body, MAX_TEXT_CHARS)
    source = data.get("source") or ""
    if not isinstance(source, str):
        raise InvalidMessage(f"field 'source' must be text, found {type(source).__name__}")
    _check_length("source", source, MAX_SOURCE_CHARS)
    published = data.get("published_at")
    if isinstance(published, str):
        _check_length("published_at", published, MAX_PUBLISHED_AT_CHARS)
    event_time = _event_time(published, fallback_time, not_after)
    if isinstance(published, str) and published:
        published_at = published
    else:
        published_at = format_time(event_time)
    return NewsItem(
        id=_message_id(data.get("id"), body, source, published),
        text=body.strip(),
        event_time=event_time,
        source=source,
        published_at=published_at,
        entities=_entities(data.get("entities") or []),
        extra=_extra_fields(data),
    )


def _check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidMessage(f"field {name!r} has {len(value)} characters, at most {limit}")


def _message_id(given: object, body: str, source: str, published: object) -> str:
    """The message's `id` as text, or one derived from its content when it has none."""
    if given is None or given == "":
        return derive_id(body, source, "" if published is None else str(published))
    if isinstance(given, bool) or not isinstance(given, (int, str)):
        raise InvalidMessage(f"field 'id' must be text or an integer, found {given!r}"[:200])
    message_id = str(given)
    _check_length("id", message_id, MAX_ID_CHARS)
    return message_id


def _entities(entities: object) -> list[str]:
    """The tickers of field `entities`, trimmed, without '$', upper case."""
    if not isinstance(entities, list) or not all(isinstance(e, str) for e in entities):
        raise InvalidMessage("field 'entities' must be a list of ticker strings")
    if len(entities) > MAX_ENTITIES:
        raise InvalidMessage(f"field 'entities' has {len(entities)} items, at most {MAX_ENTITIES}")
    tickers = []
    for item in (e.strip() for e in entities if e.strip()):
        if len(item) > MAX_ENTITY_CHARS:
            raise InvalidMessage(
                f"field 'entities' has an item of {len(item)} characters, at most "
                f"{MAX_ENTITY_CHARS} ({item[:20]!r}...)"
            )
        ticker = as_ticker(item)
        if ticker is None:
            raise InvalidMessage(
                f"field 'entities' has {item!r}, not a ticker: expected 1-6 letters with an "
                "optional '.X' class suffix and an optional leading '$' (e.g. 'ACME', '$BRK.B')"
            )
        tickers.append(ticker)
    return tickers


def _extra_fields(data: dict) -> dict[str, object]:
    """The message's other fields (passed on to the scored topic), MAX_EXTRA_BYTES in all."""
    extra = {k: v for k, v in data.items() if k not in KNOWN_FIELDS}
    if not extra:
        return extra
    sizes = {k: _json_bytes(v) for k, v in extra.items()}
    total = _json_bytes(extra)
    if total > MAX_EXTRA_BYTES:
        largest = max(sizes, key=sizes.__getitem__)
        raise InvalidMessage(
            f"fields other than {', '.join(KNOWN_FIELDS)} have {total} bytes of JSON in all, at "
            f"most {MAX_EXTRA_BYTES} (the largest: {largest[:40]!r}, {sizes[largest]} bytes)"
        )
    return extra


def _json_bytes(value: object) -> int:
    """The size of `value` as compact UTF-8 JSON, as the scored topic carries it."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
