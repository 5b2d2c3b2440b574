"""`RedisSignalStore`: analysts' signals in Redis under the consumer's key prefix.

Keys: `scored` (list, newest first, capped), `corrections` and `verdicts` (hashes of JSON
records: one per (task, headline) and per alert), `corrections:by_time` and `verdicts:by_time`
(sorted sets of their records' positions, `signal_store.position`, all with score 0 so Redis
orders them by position: a page is one ZREVRANGEBYLEX ... LIMIT and one HMGET), `audit` (list,
newest first, capped). Signals have no TTL: they are training data.

The previous version (no `by_time` sets) may still be saving beside this one during a rolling
upgrade: it HSETs a record and leaves the index alone, so a record it adds has no position and one
it replaces keeps its old position. So a page read leaves out and ZREMs a position whose record is
gone or now sorts elsewhere, and repairs the index (`_repair`: HSCAN and ZSCAN a chunk at a time)
when positions and records differ in number or a save found the record it replaced unindexed
(it sets `<name>:by_time:repair`: the index may hold a stale position of that record), then reads
the page again. With the index whole a page read reads one page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

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

    def _keys(self, name: str) -> tuple[str, str, str]:
        """The hash of `name`'s records, its index and the index's repair flag."""
        return self._k(name), self._k(f"{name}:by_time"), self._k(f"{name}:by_time:repair")

    def _save(self, name: str, field: str, record: dict) -> None:
        """Store `record` under `field`, its position replacing the one of the record it
        replaces (WATCH on the hash: retried when another write comes between). A replaced
        record without a position was saved by the previous version, which may have left the
        position of the record it replaced in the index: the save flags the index for repair."""
        records, index, repair = self._keys(name)

        def replace(pipe: Pipeline) -> None:
            old = pipe.hget(records, field)
            replaced = None if old is None else position(json.loads(old), field)
            unindexed = replaced is not None and pipe.zscore(index, replaced) is None
            pipe.multi()
            if replaced is not None:
                pipe.zrem(index, replaced)
            pipe.hset(records, field, json.dumps(record, sort_keys=True))
            pipe.zadd(index, {position(record, field): 0})
            if unindexed:
                pipe.set(repair, 1)

        self.client.transaction(replace, records)

    def _page(self, name: str, limit: int, after: str | None) -> Page:
        records, index, repair = self._keys(name)
        start = "+" if after is None else f"({after}"
        pipe = self.client.pipeline(transaction=True)  # counts of one moment: no false repair
        pipe.hlen(records).zcard(index).exists(repair)
        pipe.zrevrangebylex(index, start, "-", start=0, num=limit + 1)
        stored, indexed, flagged, placed = pipe.execute()
        current, dropped = self._current(records, index, placed)
        if flagged or indexed - dropped != stored:
            self._repair(records, index, repair)
            placed = self.client.zrevrangebylex(index, start, "-", start=0, num=limit + 1)
            current, _ = self._current(records, index, placed)
        return page_of(current, limit)

    def _current(
        self, records: str, index: str, placed: list[str]
    ) -> tuple[list[tuple[str, dict | None]], int]:
        """The records at these positions (None for a stale position: its record is gone or
        now sorts elsewhere), and how many stale positions were removed from `index`."""
        found = self.client.hmget(records, [field_of(p) for p in placed]) if placed else []
        loaded = [None if raw is None else json.loads(raw) for raw in found]
        current = [
            (at, None if record is None or position(record, field_of(at)) != at else record)
            for at, record in zip(placed, loaded, strict=True)
        ]
        stale = [at for at, record in current if record is None]
        return current, self.client.zrem(index, *stale) if stale else 0

    def _repair(self, records: str, index: str, repair: str) -> None:
        """Make `index` hold the position of every record in `records` and nothing else, a
        chunk at a time; a chunk is retried when a write to the hash comes between its read and
        its write. The flag goes first, so a save that flags the index meanwhile is not lost."""
        self.client.delete(repair)
        self._scan_in_chunks(records, index, self._index_chunk)
        self._scan_in_chunks(records, index, self._unindex_stale_chunk)

    @staticmethod
    def _index_chunk(pipe: Pipeline, records: str, index: str, at: int) -> int:
        following, chunk = pipe.hscan(records, at, count=SCAN_CHUNK)
        pipe.multi()
        if chunk:
            pipe.zadd(index, {position(json.loads(v), f): 0 for f, v in chunk.items()})
        return following

    @staticmethod
    def _unindex_stale_chunk(pipe: Pipeline, records: str, index: str, at: int) -> int:
        following, chunk = pipe.zscan(index, at, count=SCAN_CHUNK)
        placed = [member for member, _ in chunk]
        found = pipe.hmget(records, [field_of(p) for p in placed]) if placed else []
        stale = [
            at_
            for at_, raw in zip(placed, found, strict=True)
            if raw is None or position(json.loads(raw), field_of(at_)) != at_
        ]
        pipe.multi()
        if stale:
            pipe.zrem(index, *stale)
        return following

    def _scan_in_chunks(
        self, records: str, index: str, chunk: Callable[[Pipeline, str, str, int], int]
    ) -> None:
        """Run `chunk` (one SCAN reply and its write) from cursor 0 until the scan ends, each
        in a transaction that WATCHes `records`."""
        cursor = 0
        while True:

            def one_chunk(pipe: Pipeline, at: int = cursor) -> int:
                return chunk(pipe, records, index, at)

            cursor = self.client.transaction(one_chunk, records, value_from_callable=True)
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
