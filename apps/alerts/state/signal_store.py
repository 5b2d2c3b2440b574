"""The `SignalStore` contract (analysts' corrections and verdicts, the recent scored headlines
they correct, the audit trail) and its in-memory twin.

Scored headlines are kept newest first, capped at MAX_SCORED; a correction is stored per
(task, headline) and a verdict per alert, so a second one replaces the first; the audit trail
keeps every action, capped at MAX_AUDIT.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from threefold.apps.alerts.signals import correction_key

MAX_SCORED = 500
MAX_AUDIT = 1000


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
        """Every stored correction, oldest first."""
        ...

    def save_verdict(self, record: dict) -> None: ...

    def verdicts(self) -> list[dict]:
        """Every stored verdict, oldest first."""
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
            key = correction_key(str(record["task"]), str(record["text"]))
            self._corrections.pop(key, None)
            self._corrections[key] = dict(record)

    def corrections(self) -> list[dict]:
        with self._lock:
            return sorted(self._corrections.values(), key=lambda r: r["at"])

    def save_verdict(self, record: dict) -> None:
        with self._lock:
            self._verdicts[str(record["alert_id"])] = dict(record)

    def verdicts(self) -> list[dict]:
        with self._lock:
            return sorted(self._verdicts.values(), key=lambda r: r["at"])

    def append_audit(self, record: dict) -> None:
        with self._lock:
            self._audit.append(dict(record))
            del self._audit[:-MAX_AUDIT]

    def audit_trail(self, limit: int = 100) -> list[dict]:
        with self._lock:
            return list(reversed(self._audit[-limit:]))
