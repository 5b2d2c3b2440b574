"""Feedback logs in Redis: one capped list per log under `<prefix><name>` (newest last).

Retention: at most `max_entries` records per log, and the log expires `ttl_s` after its last
record (None: no expiry).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from threefold.apps.qa.feedback import MAX_LOG_ENTRIES


class RedisRecordLog:
    """A `RecordLog` in Redis lists, shared by every worker."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        max_entries: int = MAX_LOG_ENTRIES,
        ttl_s: int | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl_s = ttl_s

    def append(self, name: str, record: dict[str, Any]) -> None:
        self.append_many([(name, record)])

    def append_many(self, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append (log name, record) pairs in one MULTI/EXEC: all of them reach Redis or none,
        each log's in the order given."""
        by_key: dict[str, list[str]] = {}
        for name, record in records:
            by_key.setdefault(self.prefix + name, []).append(json.dumps(record, ensure_ascii=False))
        if not by_key:
            return
        pipe = self.client.pipeline()
        for key, values in by_key.items():
            pipe.rpush(key, *values)
            pipe.ltrim(key, -self.max_entries, -1)
            if self.ttl_s is not None:
                pipe.expire(key, self.ttl_s)
        pipe.execute()

    def ping(self) -> None:
        """Raise what redis-py raises when Redis does not answer."""
        self.client.ping()

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        for raw in self.client.lrange(self.prefix + name, 0, -1):
            yield json.loads(raw)
