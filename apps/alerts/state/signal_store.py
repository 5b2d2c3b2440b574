"""The `SignalStore` contract (analysts' corrections and verdicts, the recent scored headlines
they correct, the audit trail) and its in-memory twin.

Scored headlines are kept newest first, capped at MAX_SCORED; a correction is stored per
(task, headline) and a verdict per alert, so a second one replaces the first; the audit trail
keeps every action, capped at MAX_AUDIT.

Corrections and verdicts are read a page at a time, newest first. A record's `position` is its
`at` (the fixed-width ISO time `signals.make_correction`/`make_verdict` write) and its key, so
positions sort as the records do (ties on `at` by key) and a page starts just after the
position where the one before it ended: a record saved meanwhile is newer, so it is neither
repeated on a later page nor pushes another one off it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from threefold.apps.alerts.signals import TASKS, correction_key

MAX_SCORED = 500
MAX_AUDIT = 1000
# a `position`: `at` as signals.make_correction/make_verdict write it (fixed width, so positions
# sort by time), a space, the record's key
POSITION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S.*", re.ASCII | re.DOTALL)


@dataclass(frozen=True)
class Page:
    """Stored signals, newest first; `after` is the position the next page starts after (None:
    this page holds the oldest)."""

    records: list[dict]
    after: str | None


def correction_field(record: Mapping[str, object]) -> str:
    """The key a correction is stored under: one per (task, headline text)."""
    return correction_key(str(record["task"]), str(record["text"]))


def verdict_field(record: Mapping[str, object]) -> str:
    """The key a verdict is stored under: one per alert."""
    return str(record["alert_id"])


def position(record: Mapping[str, object], field: str) -> str:
    """Where a stored signal sorts: its `at`, a space, its key (`field_of` reads the key back)."""
    return f"{record['at']} {field}"


def is_position(text: str) -> bool:
    """Whether `text` has the form of a `position` (a page's cursor names one)."""
    return POSITION.fullmatch(text) is not None


def field_of(position_: str) -> str:
    """The key in a `position` (`at` holds no space)."""
    return position_.partition(" ")[2]


def page_of(newest_first: Sequence[tuple[str, dict | None]], limit: int) -> Page:
    """The page made of up to `limit` + 1 (position, record) pairs read newest first: the first
    `limit` records (a record gone since its position was read is left out), and where the next
    page starts when there was one more."""
    shown = newest_first[:limit]
    after = shown[-1][0] if len(newest_first) > limit else None
    return Page([record for _, record in shown if record is not None], after)


def corrections_of_texts(texts: Iterable[str]) -> list[str]:
    """The keys the corrections of these headline texts (every task) are stored under."""
    return [correction_key(task, text) for text in dict.fromkeys(texts) for task in TASKS]


class SignalStore(Protocol):
    """What the consumer records for analysts and what their corrections and verdicts keep."""

    def record_scored(self, records: Sequence[dict]) -> None:
        """Remember these scored messages (`signals.scored_summary`), newest last."""
        ...

    def recent_scored(self, limit: int = 50) -> list[dict]:
        """The newest scored messages first."""
        ...

    def scored_message(self, message_id: str) -> dict | None:
        """The newest remembered scored message with this id, or None."""
        ...

    def save_correction(self, record: dict) -> None: ...

    def corrections(self) -> list[dict]:
        """Every stored correction, oldest first (retraining reads them all)."""
        ...

    def corrections_page(self, limit: int, after: str | None = None) -> Page:
        """Up to `limit` corrections, newest first, starting after position `after`."""
        ...

    def corrections_of(self, texts: Iterable[str]) -> list[dict]:
        """The stored corrections (any task) of these headline texts."""
        ...

    def save_verdict(self, record: dict) -> None: ...

    def verdicts(self) -> list[dict]:
        """Every stored verdict, oldest first."""
        ...

    def verdicts_page(self, limit: int, after: str | None = None) -> Page:
        """Up to `limit` verdicts, newest first, starting after position `after`."""
        ...

    def verdicts_of(self, alert_ids: Iterable[str]) -> list[dict]:
        """The stored verdicts of these alerts."""
        ...

    def append_audit(self, record: dict) -> None: ...

    def audit_trail(self, limit: int = 100) -> list[dict]:
        """The newest audit records first."""
        ...


class InMemorySignalStore:
    """Process-local twin of `RedisSignalStore` (tests, dry runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scored: list[dict] = []
        self._corrections: dict[str, dict] = {}
        self._verdicts: dict[str, dict] = {}
        self._audit: list[dict] = []

    def record_scored(self, records: Sequence[dict]) -> None:
        with self._lock:
            self._scored.extend(dict(r) for r in records)
            del self._scored[:-MAX_SCORED]

    def recent_scored(self, limit: int = 50) -> list[dict]:
        with self._lock:
            return [dict(r) for r in reversed(self._scored[-limit:])]

    def scored_message(self, message_id: str) -> dict | None:
        with self._lock:
            found = [r for r in self._scored if r["id"] == message_id]
        return dict(found[-1]) if found else None

    def save_correction(self, record: dict) -> None:
        with self._lock:
            self._corrections[correction_field(record)] = dict(record)

    def corrections(self) -> list[dict]:
        with self._lock:
            return sorted(self._corrections.values(), key=lambda r: r["at"])

    def corrections_page(self, limit: int, after: str | None = None) -> Page:
        return self._page(self._corrections, limit, after)

    def corrections_of(self, texts: Iterable[str]) -> list[dict]:
        return self._pick(self._corrections, corrections_of_texts(texts))

    def save_verdict(self, record: dict) -> None:
        with self._lock:
            self._verdicts[verdict_field(record)] = dict(record)

    def verdicts(self) -> list[dict]:
        with self._lock:
            return sorted(self._verdicts.values(), key=lambda r: r["at"])

    def verdicts_page(self, limit: int, after: str | None = None) -> Page:
        return self._page(self._verdicts, limit, after)

    def verdicts_of(self, alert_ids: Iterable[str]) -> list[dict]:
        return self._pick(self._verdicts, alert_ids)

    def _page(self, stored: dict[str, dict], limit: int, after: str | None) -> Page:
        with self._lock:
            placed = [(position(r, f), dict(r)) for f, r in stored.items()]
        newest_first = sorted(placed, key=lambda pair: pair[0], reverse=True)
        later = [pair for pair in newest_first if after is None or pair[0] < after]
        return page_of(later[: limit + 1], limit)

    def _pick(self, stored: dict[str, dict], fields: Iterable[str]) -> list[dict]:
        with self._lock:
            return [dict(stored[f]) for f in dict.fromkeys(fields) if f in stored]

    def append_audit(self, record: dict) -> None:
        with self._lock:
            self._audit.append(dict(record))
            del self._audit[:-MAX_AUDIT]

    def audit_trail(self, limit: int = 100) -> list[dict]:
        with self._lock:
            return list(reversed(self._audit[-limit:]))
