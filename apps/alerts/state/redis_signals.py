"""`RedisSignalStore`: analysts' signals in Redis under the consumer's key prefix.

Keys: `scored` (list, newest first, capped), `corrections` and `verdicts` (hashes of JSON
records: one per (task, headline) and per alert), `audit` (list, newest first, capped).
Signals have no TTL: they are training data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from threefold.apps.alerts.signals import correction_key
from threefold.apps.alerts.state.signal_store import MAX_AUDIT, MAX_SCORED


class RedisSignalStore:
    """Signals in one Redis database under `prefix` (the consumer's and dashboard's prefix)."""

    def __init__(self, client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _k(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def record_scored(self, records: Sequence[dict]) -> None:
        if not records:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self._k("scored"), *(json.dumps(r, sort_keys=True) for r in records))
        pipe.ltrim(self._k("scored"), 0, MAX_SCORED - 1)
        pipe.execute()

    def recent_scored(self, limit: int = 50) -> list[dict]:
        return [json.loads(r) for r in self.client.lrange(self._k("scored"), 0, limit - 1)]

    def scored_message(self, message_id: str) -> dict | None:
        for raw in self.client.lrange(self._k("scored"), 0, -1):
            record = json.loads(raw)
            if record.get("id") == message_id:
                return record
        return None

    def save_correction(self, record: dict) -> None:
        key = correction_key(str(record["task"]), str(record["text"]))
        self.client.hset(self._k("corrections"), key, json.dumps(record, sort_keys=True))

    def corrections(self) -> list[dict]:
        found = [json.loads(v) for v in self.client.hvals(self._k("corrections"))]
        return sorted(found, key=lambda r: r["at"])

    def save_verdict(self, record: dict) -> None:
        self.client.hset(
            self._k("verdicts"), str(record["alert_id"]), json.dumps(record, sort_keys=True)
        )

    def verdicts(self) -> list[dict]:
        found = [json.loads(v) for v in self.client.hvals(self._k("verdicts"))]
        return sorted(found, key=lambda r: r["at"])

    def append_audit(self, record: dict) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self._k("audit"), json.dumps(record, sort_keys=True, default=str))
        pipe.ltrim(self._k("audit"), 0, MAX_AUDIT - 1)
        pipe.execute()

    def audit_trail(self, limit: int = 100) -> list[dict]:
        return [json.loads(r) for r in self.client.lrange(self._k("audit"), 0, limit - 1)]
