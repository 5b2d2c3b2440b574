"""Feedback logs in Redis: one capped list per log under `<prefix><name>` (newest last).

Retention: at most `max_entries` records per log, and the log expires `ttl_s` after its last
record (None: no expiry).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from threefold.apps.qa.feedback import MAX_LOG_ENTRIES
from threefold.streaming.record_spool import redis_takes_writes

WRITE_PROBE_KEY = "spool-write-probe"  # `takes_writes`

# KEYS: the logs; ARGV: max entries, TTL in seconds (-1: none), then per log its record count and
# records. Every key is checked before anything is written: a key of another type (another app
# under this prefix) fails the whole call with nothing written, so a retry never writes the
# other logs' records twice (in MULTI/EXEC the other commands would have run).
APPEND_RECORDS_SCRIPT = """
for _, key in ipairs(KEYS) do
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= 'list' then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found
      .. ', expected a list of records; no record of this batch was written')
  end
end
local max_entries, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = 3
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  for first = at + 1, at + count, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, first, math.min(first + 999, at + count)))
  end
  at = at + count + 1
  redis.call('LTRIM', key, -max_entries, -1)
  if ttl >= 0 then
    redis.call('EXPIRE', key, ttl)
  end
end
return #KEYS
"""


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
        self._append_script: Any = None

    def append(self, name: str, record: dict[str, Any]) -> None:
        self.append_many([(name, record)])

    def append_many(self, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append (log name, record) pairs in one Lua script: all of them reach Redis or none
        (a key of another type under the prefix: a `ResponseError`, nothing written), each
        log's in the order given."""
        by_key: dict[str, list[str]] = {}
        for name, record in records:
            by_key.setdefault(self.prefix + name, []).append(json.dumps(record, ensure_ascii=False))
        if not by_key:
            return
        if self._append_script is None:
            self._append_script = self.client.register_script(APPEND_RECORDS_SCRIPT)
        args: list[Any] = [self.max_entries, -1 if self.ttl_s is None else self.ttl_s]
        for values in by_key.values():
            args += [len(values), *values]
        self._append_script(keys=list(by_key), args=args)

    def takes_writes(self) -> bool:
        """Whether Redis takes a write now: False while it refuses every write (READONLY
        replica, OOM, MISCONF) or does not answer (`redis_takes_writes`)."""
        return redis_takes_writes(self.client, self.prefix + WRITE_PROBE_KEY)

    def ping(self) -> None:
        """Raise what redis-py raises when Redis does not answer."""
        self.client.ping()

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        for raw in self.client.lrange(self.prefix + name, 0, -1):
            yield json.loads(raw)
