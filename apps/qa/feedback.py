"""The signals the learning loop reads back: thumbs, unanswered questions, agents' replies.

Every record has its provenance: when (`ts`), whose conversation (`session_id`), what the
customer saw (the bot's answer or reply and the `bot_version` that gave it) or who answered
(`agent`). One vote per answer: the log keeps every click, and reading it (list, CSV) counts
only the latest vote of each turn, so a second vote replaces the first. Feedback and
unanswered questions export to CSV.

The records are kept in a `RecordLog`: `MemoryRecordLog` in this process (the app uses it when
Redis is not configured), `redis_feedback.RedisRecordLog` in Redis.
"""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import IO, Any, Protocol

from threefold.core.privacy import mask_pii

FEEDBACK_FIELDS = (
    "ts",
    "session_id",
    "turn_id",
    "rating",
    "faq_id",
    "question",
    "answer",
    "comment",
    "bot_version",
)
UNANSWERED_FIELDS = (
    "ts",
    "session_id",
    "question",
    "reason",
    "confidence",
    "candidates",
    "bot_version",
)
AGENT_REPLY_FIELDS = ("ts", "session_id", "turn_id", "agent", "question", "reply")
MAX_LOG_ENTRIES = 100_000


FEEDBACK_LOG = "feedback"
UNANSWERED_LOG = "unanswered"
AGENT_REPLY_LOG = "agent_replies"


class RecordLog(Protocol):
    """Named append-only lists of JSON-able records (newest last, capped)."""

    def append(self, name: str, record: dict[str, Any]) -> None: ...

    def read(self, name: str) -> Iterator[dict[str, Any]]: ...


class MemoryRecordLog:
    """A `RecordLog` in this process only (lost on restart, not shared between workers)."""

    def __init__(self, *, max_entries: int = MAX_LOG_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._logs: dict[str, deque[dict[str, Any]]] = {}

    def append(self, name: str, record: dict[str, Any]) -> int:
        """Add `record` to log `name`; returns how many older records a full log dropped (0/1)."""
        with self._lock:
            log = self._logs.setdefault(name, deque(maxlen=self.max_entries))
            full = len(log) == self.max_entries
            log.append(record)
        return int(full)

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            records = list(self._logs.get(name, ()))
        yield from records

    def __len__(self) -> int:
        """How many records the logs hold, all together."""
        with self._lock:
            return sum(len(records) for records in self._logs.values())

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Take every record out of the logs: (log name, record) pairs, oldest first per log."""
        with self._lock:
            logs, self._logs = self._logs, {}
        return [(name, record) for name, records in logs.items() for record in records]

    def put_back(self, records: list[tuple[str, dict[str, Any]]]) -> Counter[str]:
        """Return drained (log name, record) pairs to the front of their logs, ahead of records
        appended since; a full log still keeps its newest `max_entries`. Returns how many each
        log dropped."""
        older: dict[str, list[dict[str, Any]]] = {}
        for name, record in records:
            older.setdefault(name, []).append(record)
        dropped: Counter[str] = Counter()
        with self._lock:
            for name, front in older.items():
                newer = self._logs.get(name, ())
                dropped[name] = max(0, len(front) + len(newer) - self.max_entries)
                self._logs[name] = deque([*front, *newer], maxlen=self.max_entries)
        return dropped


class FeedbackStore:
    """Ratings of answers and unanswered questions, kept in the logs "feedback" and "unanswered".

    Customer text is stored with personal data masked (`core.privacy.mask_pii`)."""

    def __init__(self, log: RecordLog) -> None:
        self.log = log

    def record_feedback(
        self,
        *,
        session_id: str,
        turn_id: str,
        rating: str,
        faq_id: str | None,
        question: str,
        answer: str,
        comment: str = "",
        bot_version: str = "",
    ) -> dict[str, Any]:
        """Store one rating ("up" or "down") of a bot answer; returns the stored record."""
        record = {
            "ts": round(time.time(), 3),
            "session_id": session_id,
            "turn_id": turn_id,
            "rating": rating,
            "faq_id": faq_id or "",
            "question": mask_pii(question),
            "answer": mask_pii(answer),
            "comment": mask_pii(comment),
            "bot_version": bot_version,
        }
        self.log.append(FEEDBACK_LOG, record)
        return record

    def log_unanswered(
        self,
        *,
        session_id: str,
        question: str,
        reason: str,
        confidence: float,
        candidates: list[str],
        bot_version: str = "",
    ) -> None:
        """Remember a question the bot did not answer, and the bot version that declined it."""
        record = {
            "ts": round(time.time(), 3),
            "session_id": session_id,
            "question": mask_pii(question),
            "reason": reason,
            "confidence": round(confidence, 4),
            "candidates": candidates,
            "bot_version": bot_version,
        }
        self.log.append(UNANSWERED_LOG, record)

    def log_agent_reply(
        self, *, session_id: str, turn_id: str, agent: str, question: str, reply: str
    ) -> dict[str, Any]:
        """Remember a person's reply to a customer's question (a label the bot can learn from)."""
        record = {
            "ts": round(time.time(), 3),
            "session_id": session_id,
            "turn_id": turn_id,
            "agent": agent,
            "question": mask_pii(question),
            "reply": mask_pii(reply),
        }
        self.log.append(AGENT_REPLY_LOG, record)
        return record

    def feedback(self) -> list[dict[str, Any]]:
        """The ratings, one per answer (its latest vote), oldest first."""
        return list(_latest_vote_per_turn(self.log.read(FEEDBACK_LOG)))

    def unanswered(self) -> list[dict[str, Any]]:
        return list(self.log.read(UNANSWERED_LOG))

    def agent_replies(self) -> list[dict[str, Any]]:
        return list(self.log.read(AGENT_REPLY_LOG))

    def export_feedback_csv(self, handle: IO[str]) -> int:
        """Write all ratings as CSV (header + one row each); returns the number of rows."""
        return _write_csv(handle, FEEDBACK_FIELDS, iter(self.feedback()))

    def export_unanswered_csv(self, handle: IO[str]) -> int:
        """Write the unanswered-question log as CSV; candidates are joined with '|'."""
        rows = (
            {**r, "candidates": "|".join(r.get("candidates", []))}
            for r in self.log.read(UNANSWERED_LOG)
        )
        return _write_csv(handle, UNANSWERED_FIELDS, rows)

    def export_agent_replies_csv(self, handle: IO[str]) -> int:
        """Write the agents' replies (with the customer's question) as CSV."""
        return _write_csv(handle, AGENT_REPLY_FIELDS, iter(self.agent_replies()))


def _latest_vote_per_turn(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each (session, turn)'s last record, in the order of those last votes."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record.get("session_id", ""), record.get("turn_id", ""))
        latest.pop(key, None)
        latest[key] = record
    yield from latest.values()


def _write_csv(handle: IO[str], fields: tuple[str, ...], rows: Iterator[dict[str, Any]]) -> int:
    writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: _safe_cell(row.get(k, "")) for k in fields})
        count += 1
    return count


def _safe_cell(value: Any) -> Any:
    """Neutralize spreadsheet formulas in user text (CSV injection): prefix with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
