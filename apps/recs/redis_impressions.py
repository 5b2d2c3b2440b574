"""Impressions in Redis, shared by every worker (the `ImpressionStore` of `impressions.py`).

Keys under the app prefix, all bounded:
    impressions:log             stream of served lists (XADD MAXLEN ~ `log_limit`)
    impressions:list:<list_id>  hash {version, variant, items, user} for attribution, plus a
                                field per outcome counted (`click:<item>`: once each)
                                (`list_ttl_seconds`)
    impressions:counts:<ver>    hash {lists, shown, click, purchase} per model version
    impressions:versions        set of the versions counted
    impressions:ab:<variant>:<ver>  the same counts per A/B variant and version
    impressions:ab              set of the JSON pairs [variant, version] counted
Every call goes through `RedisState`'s circuit breaker: False/None while Redis is down.

`add` stores each impression once, all or nothing per batch (one Lua script, ADD_BATCH
impressions a call): the list record's `version` field (HSETNX) says it was stored, so a write
Redis carried out after the worker's timeout, replayed from the spool, is not counted again (as
long as the list record lives: `list_ttl_seconds`), and a key of another type fails the batch
before anything is written, so the spool can push it again in halves to find the refused one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from threefold.apps.recs.ab_buckets import CONTROL
from threefold.apps.recs.events import Event
from threefold.apps.recs.impressions import (
    OUTCOMES,
    AbCounts,
    Attribution,
    Impression,
    attributions,
    outcome_key,
)
from threefold.apps.recs.redis_state import RedisState
from threefold.streaming.write_ids import WRONG_TYPE_LUA

ADD_BATCH = 500  # impressions per script call
# KEYS: the log, the versions set, the (variant, version) set, then per impression its list
# record, version counts and (variant, version) counts. ARGV: log length, list TTL, then per
# impression its JSON, version, variant, items JSON, user, items shown, [variant, version] JSON.
# Returns how many it stored: one whose list record has a version was stored before.
ADD_IMPRESSIONS_SCRIPT = (
    WRONG_TYPE_LUA
    + """
local lists = (#KEYS - 3) / 3
local bad = wrong_type(KEYS[1], 'stream', 'impression')
  or wrong_type(KEYS[2], 'set', 'impression') or wrong_type(KEYS[3], 'set', 'impression')
for i = 0, lists - 1 do
  for k = 4, 6 do
    bad = bad or wrong_type(KEYS[k + 3 * i], 'hash', 'impression')
  end
end
if bad then
  return bad
end
local written = 0
for i = 0, lists - 1 do
  local record, a = KEYS[4 + 3 * i], 2 + 7 * i
  local version = ARGV[a + 2]
  if redis.call('HSETNX', record, 'version', version) == 1 then
    redis.call('HSET', record, 'variant', ARGV[a + 3], 'items', ARGV[a + 4], 'user', ARGV[a + 5])
    redis.call('EXPIRE', record, ARGV[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'impression', ARGV[a + 1])
    for k = 5, 6 do
      redis.call('HINCRBY', KEYS[k + 3 * i], 'lists', 1)
      redis.call('HINCRBY', KEYS[k + 3 * i], 'shown', ARGV[a + 6])
    end
    redis.call('SADD', KEYS[2], version)
    redis.call('SADD', KEYS[3], ARGV[a + 7])
    written = written + 1
  end
end
return written
"""
)


class RedisImpressionStore:
    def __init__(
        self, state: RedisState, *, log_limit: int = 100_000, list_ttl_seconds: int = 86_400
    ) -> None:
        self.state = state
        self.log_limit = log_limit
        self.list_ttl_seconds = list_ttl_seconds
        self._add_script: Any = None

    def _key(self, *parts: str) -> str:
        return self.state._key("impressions", *parts)

    def _ab_key(self, variant: str, version: str) -> str:
        return self._key("ab", variant, version)

    def add(self, impressions: Sequence[Impression]) -> bool:
        """Store and count the impressions, each once (see the module docstring); False when
        Redis is unavailable or refused a batch (some leading batches may be stored: adding
        the same impressions again stores only the rest)."""
        for start in range(0, len(impressions), ADD_BATCH):
            batch = impressions[start : start + ADD_BATCH]
            if self.state._call("add_impressions", lambda r, b=batch: self._add(r, b)) is None:
                return False
        return True

    def _add(self, r: Any, impressions: Sequence[Impression]) -> int:
        if self._add_script is None:
            self._add_script = r.register_script(ADD_IMPRESSIONS_SCRIPT)
        keys: list[Any] = [self._key("log"), self._key("versions"), self._key("ab")]
        args: list[Any] = [self.log_limit, self.list_ttl_seconds]
        for impression in impressions:
            version, variant = impression.model_version, impression.variant
            keys += [
                self._key("list", impression.list_id),
                self._key("counts", version),
                self._ab_key(variant, version),
            ]
            args += [
                json.dumps(impression.to_dict()),
                version,
                variant,
                json.dumps(impression.items),
                impression.user_id,
                len(impression.items),
                json.dumps([variant, version]),
            ]
        return int(self._add_script(keys=keys, args=args, client=r))

    def attribute(self, events: Sequence[Event]) -> list[Attribution] | None:
        outcomes = [e for e in events if e.list_id and e.event in OUTCOMES]
        if not outcomes:
            return []

        def action(r: Any) -> list[Attribution]:
            pipe = r.pipeline(transaction=False)
            for event in outcomes:
                pipe.hmget(self._key("list", event.list_id), "version", "variant", "items", "user")
            lists = {
                event.list_id: Impression(  # a list stored before users were kept: its clicker's
                    event.list_id,
                    event.user_id if user is None else user.decode(),
                    version.decode(),
                    tuple(json.loads(items)),
                    variant=variant.decode() if variant is not None else CONTROL,
                )
                for event, (version, variant, items, user) in zip(
                    outcomes, pipe.execute(), strict=True
                )
                if version is not None
            }
            candidates = attributions(outcomes, lists)
            pipe = r.pipeline(transaction=False)
            for event, _ in candidates:  # once per list, item and outcome, across workers
                pipe.hsetnx(self._key("list", event.list_id or ""), outcome_key(event), 1)
                pipe.ttl(self._key("list", event.list_id or ""))
            replies = pipe.execute()
            found = []
            pipe = r.pipeline(transaction=False)
            for (event, hit), new, ttl in zip(candidates, replies[::2], replies[1::2], strict=True):
                if ttl < 0:  # the list expired since it was read: HSETNX made a new hash
                    pipe.expire(self._key("list", event.list_id or ""), self.list_ttl_seconds)
                if new:
                    found.append(hit)
            for hit in found:
                pipe.hincrby(self._key("counts", hit.model_version), hit.event, 1)
                pipe.hincrby(self._ab_key(hit.variant, hit.model_version), hit.event, 1)
            pipe.execute()
            return found

        return self.state._call("attribute_outcomes", action)

    def counts(self) -> dict[str, dict[str, int]] | None:
        def action(r: Any) -> dict[str, dict[str, int]]:
            versions = sorted(v.decode() for v in r.smembers(self._key("versions")))
            pipe = r.pipeline(transaction=False)
            for version in versions:
                pipe.hgetall(self._key("counts", version))
            rows = pipe.execute()
            return {
                version: {k.decode(): int(v) for k, v in row.items()}
                for version, row in zip(versions, rows, strict=True)
            }

        return self.state._call("impression_counts", action)

    def ab_counts(self) -> AbCounts | None:
        def action(r: Any) -> AbCounts:
            pairs = sorted(json.loads(member) for member in r.smembers(self._key("ab")))
            pipe = r.pipeline(transaction=False)
            for variant, version in pairs:
                pipe.hgetall(self._ab_key(variant, version))
            counts: AbCounts = {}
            for (variant, version), row in zip(pairs, pipe.execute(), strict=True):
                counts.setdefault(variant, {})[version] = {
                    k.decode(): int(v) for k, v in row.items()
                }
            return counts

        return self.state._call("ab_counts", action)
