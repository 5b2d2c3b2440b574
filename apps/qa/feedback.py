"""Thumbs up/down per answer and the log of unanswered questions, in Redis, exportable to CSV."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from typing import IO, Any

FEEDBACK_FIELDS = (
    "ts",
    "session_id",
    "turn_id",
    "rating",
    "faq_id",
    "question",
    "answer",
    "comment",
)
UNANSWERED_FIELDS = ("ts", "session_id", "question", "reason", "confidence", "candidates")
MAX_LOG_ENTRIES = 100_000


class FeedbackStore:
    """Append-only Redis lists `<prefix>feedback` and `<prefix>unanswered` (newest last, capped)."""

    def __init__(self, client: Any, *, prefix: str, max_entries: int = MAX_LOG_ENTRIES) -> None:
        self.client = client
        self.prefix = prefix
        self.max_entries = max_entries

    @property
    def feedback_key(self) -> str:
        return f"{self.prefix}feedback"

    @property
    def unanswered_key(self) -> str:
        return f"{self.prefix}unanswered"

    def _append(self, key: str, record: dict[str, Any]) -> None:
        pipe = self.client.pipeline()
        pipe.rpush(key, json.dumps(record, ensure_ascii=False))
        pipe.ltrim(key, -self.max_entries, -1)
        pipe.execute()

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
    ) -> dict[str, Any]:
        """Store one rating ("up" or "down") of a bot answer; returns the stored record."""
        record = {
            "ts": round(time.time(), 3),
            "session_id": session_id,
            "turn_id": turn_id,
            "rating": rating,
            "faq_id": faq_id or "",
            "question": question,
            "answer": answer,
            "comment": comment,
        }
        self._append(self.feedback_key, record)
        return record

    def log_unanswered(
        self,
        *,
        session_id: str,
        question: str,
        reason: str,
        confidence: float,
        candidates: list[str],
    ) -> None:
        """Remember a question the bot could not answer (for KB gap analysis)."""
        record = {
            "ts": round(time.time(), 3),
            "session_id": session_id,
            "question": question,
            "reason": reason,
            "confidence": round(confidence, 4),
            "candidates": candidates,
        }
        self._append(self.unanswered_key, record)

    def feedback(self) -> list[dict[str, Any]]:
        return list(self._read(self.feedback_key))

    def unanswered(self) -> list[dict[str, Any]]:
        return list(self._read(self.unanswered_key))

    def _read(self, key: str) -> Iterator[dict[str, Any]]:
        for raw in self.client.lrange(key, 0, -1):
            yield json.loads(raw)

    def export_feedback_csv(self, handle: IO[str]) -> int:
        """Write all ratings as CSV (header + one row each); returns the number of rows."""
        return _write_csv(handle, FEEDBACK_FIELDS, self._read(self.feedback_key))

    def export_unanswered_csv(self, handle: IO[str]) -> int:
        """Write the unanswered-question log as CSV; candidates are joined with '|'."""
        rows = (
            {**r, "candidates": "|".join(r.get("candidates", []))}
            for r in self._read(self.unanswered_key)
        )
        return _write_csv(handle, UNANSWERED_FIELDS, rows)


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
