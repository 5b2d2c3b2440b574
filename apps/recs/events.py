"""User events (view, click, purchase): weights, validation and loading; the ids that make an
accepted event's write to Redis happen once."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from threefold.apps.recs.catalog import stored_id
from threefold.core.errors import DataError
from threefold.core.tables import read_records
from threefold.core.timestamps import parse_timestamp
from threefold.streaming.write_ids import new_write_id, spooled_write_id

logger = logging.getLogger(__name__)
EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 2.0, "purchase": 4.0}
EVENT_VERBS: dict[str, str] = {"view": "viewed", "click": "clicked", "purchase": "bought"}
DEFAULT_EVENT_TYPE = "view"
# the fields of a posted event (`type` is the older name of `event`); a file may hold more columns
EVENT_FIELDS = ("user_id", "item_id", "event", "type", "timestamp", "rating", "list_id", "event_id")
MAX_CLOCK_SKEW_S = 300.0  # how far in the future an event timestamp may be
LIST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the recommendation list an event came from
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # a client's id for one event (UUIDs fit)


@dataclass(frozen=True)
class Event:
    """One interaction; `timestamp` is unix seconds; `list_id` names the list it came from."""

    user_id: str
    item_id: str
    event: str
    timestamp: float
    rating: float | None = None
    list_id: str | None = None
    event_id: str | None = None  # the client's id for it: a retried post is counted once
    # the API's id for an event accepted without `event_id` (`with_accept_ids`); not part of
    # what happened, so events compare equal without it
    accept_id: str | None = field(default=None, compare=False)

    @property
    def weight(self) -> float:
        return EVENT_WEIGHTS[self.event]

    @property
    def write_id(self) -> str | None:
        """What its write to Redis is done once by: the client's `event_id`, else `accept_id`."""
        if self.event_id:
            return f"c:{self.event_id}"
        return f"s:{self.accept_id}" if self.accept_id else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event": self.event,
            "timestamp": self.timestamp,
        }
        if self.rating is not None:
            data["rating"] = self.rating
        if self.list_id is not None:
            data["list_id"] = self.list_id
        if self.event_id is not None:
            data["event_id"] = self.event_id
        if self.accept_id is not None:
            data["accept_id"] = self.accept_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Rebuild a stored event (trusted input; see `parse_event` for user input)."""
        rating = data.get("rating")
        return cls(
            user_id=str(data["user_id"]),
            item_id=str(data["item_id"]),
            event=str(data.get("event", DEFAULT_EVENT_TYPE)),
            timestamp=float(data["timestamp"]),
            rating=float(rating) if rating is not None else None,
            list_id=data.get("list_id"),
            event_id=data.get("event_id"),
            accept_id=data.get("accept_id"),
        )


def with_accept_ids(events: Sequence[Event]) -> list[Event]:
    """The events as accepted: each without a `write_id` gets a new random `accept_id`."""
    return [e if e.write_id else replace(e, accept_id=new_write_id()) for e in events]


def with_spool_ids(records: Sequence[Event]) -> list[Event]:
    """Replayed spool records as stored: one spooled by an earlier version (no id) gets an
    `accept_id` from its content and its place in the spool, the same at every replay of that
    spool, so it is stored once however often the replay is repeated."""
    return [
        e if e.write_id else replace(e, accept_id=spooled_write_id(place, e.to_dict()))
        for place, e in enumerate(records)
    ]


def parse_event(
    values: Mapping[str, Any],
    *,
    known_items: Container[str] | None = None,
    path: str | None = None,
    line: int | None = None,
    now: float | None = None,
    strict: bool = True,
) -> Event:
    """Validate one event; DataError names the column, e.g. an item id the catalog lacks.

    `strict` (a posted event): ids must be strings, the user id must follow the id character
    rule (`stored_id`), the event type must be written as documented (lowercase) and fields
    other than `EVENT_FIELDS` are refused. A file record (`strict=False`, the operator's own
    data) may hold number ids (JSON exports), user ids only trimmed and bounded, event types in
    any case, and more columns.
    """

    def fail(column: str, message: str) -> DataError:
        return DataError(message, path=path, line=line, column=column)

    if strict and (unknown := sorted(set(values) - set(EVENT_FIELDS))):
        raise fail(unknown[0], f"unknown field(s) {unknown}; an event has {sorted(EVENT_FIELDS)}")
    ids: dict[str, str] = {}
    for column in ("user_id", "item_id"):
        value = values.get(column)
        if not strict and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            raise fail(column, f"{column!r} must be a non-empty string, found nothing")
        if not isinstance(value, str):
            hint = f'; send "{value}"' if type(value) is int else ""
            found = f"{_json_type(value)} {str(value)[:40]}"
            raise fail(column, f"{column!r} must be a string, found {found}{hint}")
        try:
            ids[column] = stored_id(column, value, checked=strict and column == "user_id")
        except DataError as exc:
            raise fail(column, str(exc)) from None
    kind = _parse_kind(values, fail, strict)
    if known_items is not None and ids["item_id"] not in known_items:
        raise fail(
            "item_id",
            f"unknown item_id {ids['item_id']!r}: it is not in the catalog; add the item first",
        )
    return Event(
        user_id=ids["user_id"],
        item_id=ids["item_id"],
        event=kind,
        timestamp=_parse_timestamp(values.get("timestamp"), fail, now),
        rating=_parse_rating(values.get("rating"), fail),
        list_id=_parse_list_id(_optional(values.get("list_id"), strict), fail),
        event_id=_parse_event_id(_optional(values.get("event_id"), strict), fail),
    )


def _json_type(value: Any) -> str:
    """The JSON name of a parsed JSON value's type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _parse_kind(values: Mapping[str, Any], fail, strict: bool) -> str:
    """The event type from `event` or its older name `type`: null or "" (in a file any blank)
    counts as absent (default: view), and two that name different types are refused."""
    kinds: dict[str, str] = {}
    for column in ("event", "type"):
        value = values.get(column)
        if value is None or value == "" or (not strict and _blank(value)):
            continue
        kind = value.strip().lower() if isinstance(value, str) else None
        if kind not in EVENT_WEIGHTS or (strict and value != kind):
            send = f"; send {kind!r}" if kind in EVENT_WEIGHTS else ""
            raise fail(
                column,
                f"{column!r} must be one of {sorted(EVENT_WEIGHTS)} (lowercase), found "
                f"{value!r}{send}",
            )
        kinds[column] = kind
    if len(set(kinds.values())) > 1:
        raise fail(
            "event",
            f"'event' {kinds['event']!r} and 'type' {kinds['type']!r} disagree: send one of "
            "them ('type' is the older name of 'event')",
        )
    return next(iter(kinds.values()), DEFAULT_EVENT_TYPE)


def _parse_event_id(value: Any, fail) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not EVENT_ID.fullmatch(value):
        raise fail(
            "event_id",
            f"'event_id' must be 1-128 letters, digits or '_-.:' (the client's id of the event, "
            f"the same on a retry), found {str(value)[:40]!r}; leave it out (or null) for none",
        )
    return value


def _parse_list_id(value: Any, fail) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not LIST_ID.fullmatch(value):
        raise fail(
            "list_id",
            f"'list_id' must be the list_id of a recommendation response (1-64 letters, digits, "
            f"'_' or '-'), found {value!r}; send it back unchanged or leave it out",
        )
    return value


def _optional(value: Any, strict: bool) -> Any:
    """An optional column's value; a file's blank cell (not `strict`) is None, as left out."""
    return None if not strict and _blank(value) else value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_timestamp(value: Any, fail, now: float | None) -> float:
    if _blank(value):
        return time.time() if now is None else now
    try:
        timestamp = parse_timestamp(value, name="'timestamp'")
    except DataError as exc:
        raise fail("timestamp", str(exc)) from None
    latest = time.time() + MAX_CLOCK_SKEW_S
    if timestamp > latest:
        raise fail(
            "timestamp",
            f"'timestamp' {value!r} is in the future (unix seconds after {latest:.0f}, now plus "
            f"{MAX_CLOCK_SKEW_S:.0f} s of clock skew); send unix seconds or ISO 8601, or omit it",
        )
    if timestamp < 0:  # as parse_timestamp refuses a negative epoch number
        raise fail(
            "timestamp",
            f"'timestamp' {value!r} is before 1970-01-01T00:00:00Z: it must be a time >= 0 in "
            "unix seconds; send unix seconds or ISO 8601 from 1970 on, or omit it",
        )
    return timestamp


def _parse_rating(value: Any, fail) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise fail("rating", f"'rating' must be a number, found {value!r}") from None
    if not math.isfinite(rating) or isinstance(value, bool):
        raise fail("rating", f"'rating' must be a finite number, found {value!r}")
    return rating


def load_events(path: str | Path, *, known_items: Container[str] | None = None) -> list[Event]:
    """Read `user_id,item_id[,event][,timestamp][,rating]` records, sorted by time (stable).

    Every record has a timestamp or none does (the file's order is then the time order); a file
    with some blank is a DataError with their count and the first one's line. The file is the
    operator's own data: a user_id the API's id rule refuses (a no-break space, a bidi override,
    nothing visible) loads as before, with one warning for the file, as a catalog file's item
    ids do.
    """
    records = read_records(
        path, required=("user_id", "item_id"), hint="(events need user_id and item_id)"
    )
    untimed = [r.line for r in records if _blank(r.values.get("timestamp"))]
    if 0 < len(untimed) < len(records):
        raise DataError(
            f"{len(untimed)} of {len(records)} events have no timestamp, so their place in "
            "time is unknown (it is not the file's order when the others have one). Fix: give "
            "every event a timestamp (unix seconds or ISO 8601), or none: a file without any "
            "is read in its own order",
            path=str(path),
            line=untimed[0],
            column="timestamp",
        )
    events = [
        parse_event(
            r.values, known_items=known_items, path=str(path), line=r.line, now=0.0, strict=False
        )
        for r in records
    ]
    _warn_of_refused_user_ids(str(path), events, [r.line for r in records])
    return sort_events(events)


def _warn_of_refused_user_ids(path: str, events: Sequence[Event], lines: Sequence[int]) -> None:
    """One warning for a file whose user ids the API's id rule refuses: count, first, fix."""
    findings: dict[str, str | None] = {}  # user id -> why the rule refuses it (None: allowed)
    first: tuple[int, str] | None = None
    refused_events = 0
    for event, line in zip(events, lines, strict=True):
        if event.user_id not in findings:
            try:
                stored_id("user_id", event.user_id, checked=True)
                findings[event.user_id] = None
            except DataError as exc:
                findings[event.user_id] = str(exc)
        if (why := findings[event.user_id]) is not None:
            refused_events += 1
            first = first or (line, why)
    if first is None:
        return
    users = sum(why is not None for why in findings.values())
    logger.warning(
        "%s: %d event(s) of %d user_id(s) the id rule refuses, loaded as before (they count "
        "for popularity and co-occurrence, but the API refuses those users: no recommendations "
        "for them and no posted events, a 400): rename those users in the file; the first, "
        "line %d: %s",
        path,
        refused_events,
        users,
        *first,
        extra={
            "fields": {
                "event": "events_file_refused_user_ids",
                "path": path,
                "events": refused_events,
                "users": users,
            }
        },
    )


def sort_events(events: Sequence[Event]) -> list[Event]:
    """Oldest first; events with equal timestamps keep their input order."""
    return sorted(events, key=lambda e: e.timestamp)


def group_by_user(events: Sequence[Event]) -> dict[str, list[Event]]:
    """Each user's events, oldest first (input order breaks timestamp ties)."""
    users: dict[str, list[Event]] = {}
    for event in sort_events(events):
        users.setdefault(event.user_id, []).append(event)
    return users
