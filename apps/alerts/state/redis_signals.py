"""`RedisSignalStore`: analysts' signals in Redis under the consumer's key prefix.

Keys: `scored` (list, newest first, capped), `corrections` and `verdicts` (hashes of JSON
records: one per (task, headline) and per alert), `corrections:by_time` and `verdicts:by_time`
(sorted sets of their records' positions, `signal_store.position`, all with score 0 so Redis
orders them by position: a page is one ZREVRANGEBYLEX ... LIMIT and one HMGET), `audit` (list,
newest first, capped). Signals have no TTL: they are training data.

Records a version without the `by_time` sets stored are indexed lazily: a page read that finds
fewer positions than records indexes the hash (HSCAN, a chunk at a time) before it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from redis.client import Pipeline

from threefold.apps.alerts.state.signal_store import (
    MAX_AUDIT,
    MAX_SCORED,
    Page,
    correction_field,
    corrections_of_texts,
    field_of,
    page_of,
    position,
    verdict_field,
)

SCAN_CHUNK = 500  # records per HSCAN reply when every record is read (retraining, indexing)


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
        self._save("corrections", correction_field(record), record)

    def corrections(self) -> list[dict]:
        return self._all("corrections")

    def corrections_page(self, limit: int, after: str | None = None) -> Page:
        return self._page("corrections", limit, after)

    def corrections_of(self, texts: Iterable[str]) -> list[dict]:
        return self._pick("corrections", corrections_of_texts(texts))

    def save_verdict(self, record: dict) -> None:
        self._save("verdicts", verdict_field(record), record)

    def verdicts(self) -> list[dict]:
        return self._all("verdicts")

    def verdicts_page(self, limit: int, after: str | None = None) -> Page:
        return self._page("verdicts", limit, after)

    def verdicts_of(self, alert_ids: Iterable[str]) -> list[dict]:
        return self._pick("verdicts", alert_ids)

    def _save(self, name: str, field: str, record: dict) -> None:
        """Store `record` under `field`, its position replacing the one of the record it
        replaces (WATCH on the hash: retried when another write comes between)."""
        records, index = self._k(name), self._k(f"{name}:by_time")

        def replace(pipe: Pipeline) -> None:
            old = pipe.hget(records, field)
            pipe.multi()
            if old is not None:
                pipe.zrem(index, position(json.loads(old), field))
            pipe.hset(records, field, json.dumps(record, sort_keys=True))
            pipe.zadd(index, {position(record, field): 0})

        self.client.transaction(replace, records)

    def _page(self, name: str, limit: int, after: str | None) -> Page:
        records, index = self._k(name), self._k(f"{name}:by_time")
        start = "+" if after is None else f"({after}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(records).zcard(index).zrevrangebylex(index, start, "-", start=0, num=limit + 1)
        stored, indexed, placed = pipe.execute()
        if indexed < stored:
            self._index(records, index)
            placed = self.client.zrevrangebylex(index, start, "-", start=0, num=limit + 1)
        found = self.client.hmget(records, [field_of(p) for p in placed]) if placed else []
        loaded = [None if raw is None else json.loads(raw) for raw in found]
        return page_of(list(zip(placed, loaded, strict=True)), limit)

    def _index(self, records: str, index: str) -> None:
        """Add the position of every record in `records` to `index`, a HSCAN chunk at a time;
        a chunk is retried when a write to the hash comes between its read and its ZADD."""
        cursor = 0
        while True:

            def index_chunk(pipe: Pipeline, at: int = cursor) -> int:
                following, chunk = pipe.hscan(records, at, count=SCAN_CHUNK)
                pipe.multi()
                if chunk:
                    pipe.zadd(index, {position(json.loads(v), f): 0 for f, v in chunk.items()})
                return following

            cursor = self.client.transaction(index_chunk, records, value_from_callable=True)
            if cursor == 0:
                return

    def _all(self, name: str) -> list[dict]:
        """Every record of the hash, oldest first, read in HSCAN chunks (not one reply)."""
        found = dict(self.client.hscan_iter(self._k(name), count=SCAN_CHUNK))
        return sorted((json.loads(raw) for raw in found.values()), key=lambda r: r["at"])

    def _pick(self, name: str, fields: Iterable[str]) -> list[dict]:
        wanted = list(dict.fromkeys(fields))
        found = self.client.hmget(self._k(name), wanted) if wanted else []
        return [json.loads(raw) for raw in found if raw is not None]

    def append_audit(self, record: dict) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self._k("audit"), json.dumps(record, sort_keys=True, default=str))
        pipe.ltrim(self._k("audit"), 0, MAX_AUDIT - 1)
        pipe.execute()

    def audit_trail(self, limit: int = 100) -> list[dict]:
        return [json.loads(r) for r in self.client.lrange(self._k("audit"), 0, limit - 1)]
