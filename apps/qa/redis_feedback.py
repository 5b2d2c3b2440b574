"""Feedback logs in Redis: one capped list per log under `<prefix><name>` (newest last).

Retention: at most `max_entries` records per log, and the log expires `ttl_s` after its last
record (None: no expiry). Each record is written once by its write id
(`streaming.write_ids`): the append claims `<prefix>record-written:<id>` and skips a record
whose id was written before (a write Redis carried out after the client timed out, then
written again from the spool or a worker's memory).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from threefold.apps.qa.feedback import MAX_LOG_ENTRIES
from threefold.streaming.record_spool import redis_takes_writes
from threefold.streaming.write_ids import WRITE_GUARD_SECONDS, WRONG_TYPE_LUA, new_write_id

# `record-written:<write id>`: the record was written, kept WRITE_GUARD_SECONDS (a day). About
# 120 bytes of Redis memory per record written in the last day (measured with the default prefix
# `threefold:qa:`): ~12 MB for 100,000 records a day.
WRITE_GUARD_KEY = "record-written:"
RecordWrite = tuple[str, dict[str, Any], str]  # (log name, record, write id)

# KEYS: the logs, then one write guard per record; ARGV: max entries, TTL in seconds (-1: none),
# guard TTL, then per record the place of its log in KEYS and the record. A record whose guard
# exists was written before and is skipped; returns how many records of each log it wrote. Every
# log is checked before anything is written: a key of another type (another app under this
# prefix) fails the whole call with nothing written and no guard claimed, so a retry writes each
# record once (in MULTI/EXEC the other commands would have run).
APPEND_RECORDS_SCRIPT = (
    WRONG_TYPE_LUA
    + """
local records = (#ARGV - 3) / 2
local logs = #KEYS - records
for i = 1, logs do
  local bad = wrong_type(KEYS[i], 'list', 'record')
  if bad then
    return bad
  end
end
local max_entries, ttl, guard_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local fresh, written = {}, {}
for i = 1, logs do
  fresh[i], written[i] = {}, 0
end
for r = 1, records do
  if redis.call('SET', KEYS[logs + r], '1', 'NX', 'EX', guard_ttl) then
    local log = tonumber(ARGV[2 + 2 * r])
    table.insert(fresh[log], ARGV[3 + 2 * r])
  end
end
for i = 1, logs do
  local values = fresh[i]
  written[i] = #values
  for first = 1, #values, 1000 do
    redis.call('RPUSH', KEYS[i], unpack(values, first, math.min(first + 999, #values)))
  end
  if #values > 0 then
    redis.call('LTRIM', KEYS[i], -max_entries, -1)
    if ttl >= 0 then
      redis.call('EXPIRE', KEYS[i], ttl)
    end
  end
end
return written
"""
)


class RedisRecordLog:
    """A `RecordLog` in Redis lists, shared by every worker."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        max_entries: int = MAX_LOG_ENTRIES,
        ttl_s: int | None = None,
        write_guard_s: int = WRITE_GUARD_SECONDS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.write_guard_s = write_guard_s
        self._append_script: Any = None

    def append(self, name: str, record: dict[str, Any]) -> None:
        """Append one record (with a new write id: nothing retries it)."""
        self.append_many([(name, record, new_write_id())])

    def append_many(self, records: Sequence[RecordWrite]) -> Counter[str]:
        """Append (log name, record, write id) triples in one Lua script: all of them reach
        Redis or none (a key of another type under the prefix: a `ResponseError`, nothing
        written), each log's in the order given.

        Returns how many records of each log Redis had already (their write id was written
        before): not written again.
        """
        logs: dict[str, int] = {}  # log name -> its place in KEYS
        guards: list[str] = []
        args: list[Any] = [
            self.max_entries,
            -1 if self.ttl_s is None else self.ttl_s,
            self.write_guard_s,
        ]
        for name, record, write_id in records:
            place = logs.setdefault(name, len(logs) + 1)
            guards.append(self.prefix + WRITE_GUARD_KEY + write_id)
            args += [place, json.dumps(record, ensure_ascii=False)]
        if not records:
            return Counter()
        if self._append_script is None:
            self._append_script = self.client.register_script(APPEND_RECORDS_SCRIPT)
        keys = [self.prefix + name for name in logs] + guards
        written = self._append_script(keys=keys, args=args)
        sent = Counter(name for name, _, _ in records)
        return +Counter(
            {name: sent[name] - int(written[place - 1]) for name, place in logs.items()}
        )

    def takes_writes(self) -> bool:
        """Whether Redis takes a write now: False while it refuses every write (READONLY
        replica, OOM, MISCONF) or does not answer (`redis_takes_writes`)."""
        return redis_takes_writes(self.client, self.prefix)

    def ping(self) -> None:
        """Raise what redis-py raises when Redis does not answer."""
        self.client.ping()

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        for raw in self.client.lrange(self.prefix + name, 0, -1):
            yield json.loads(raw)
