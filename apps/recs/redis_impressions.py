"""Impressions in Redis, shared by every worker (the `ImpressionStore` of `impressions.py`).

Keys under the app prefix, all bounded:
    impressions:log             stream of served lists (XADD MAXLEN ~ `log_limit`)
    impressions:list:<list_id>  hash {version, items}: click attribution (`list_ttl_seconds`)
    impressions:counts:<ver>    hash {lists, shown, click, purchase} per model version
    impressions:versions        set of the versions counted
Every call goes through `RedisState`'s circuit breaker: False/None while Redis is down.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from threefold.apps.recs.events import Event
from threefold.apps.recs.impressions import OUTCOMES, Impression
from threefold.apps.recs.redis_state import RedisState


class RedisImpressionStore:
    def __init__(
        self, state: RedisState, *, log_limit: int = 100_000, list_ttl_seconds: int = 86_400
    ) -> None:
        self.state = state
        self.log_limit = log_limit
        self.list_ttl_seconds = list_ttl_seconds

    def _key(self, *parts: str) -> str:
        return self.state._key("impressions", *parts)

    def add(self, impressions: Sequence[Impression]) -> bool:
        def action(r: Any) -> bool:
            pipe = r.pipeline(transaction=False)
            for impression in impressions:
                version = impression.model_version
                pipe.xadd(
                    self._key("log"),
                    {"impression": json.dumps(impression.to_dict())},
                    maxlen=self.log_limit,
                    approximate=True,
                )
                record = self._key("list", impression.list_id)
                pipe.hset(
                    record, mapping={"version": version, "items": json.dumps(impression.items)}
                )
                pipe.expire(record, self.list_ttl_seconds)
                pipe.hincrby(self._key("counts", version), "lists", 1)
                pipe.hincrby(self._key("counts", version), "shown", len(impression.items))
                pipe.sadd(self._key("versions"), version)
            pipe.execute()
            return True

        return self.state._call("add_impressions", action) is True

    def attribute(self, events: Sequence[Event]) -> bool:
        outcomes = [e for e in events if e.list_id and e.event in OUTCOMES]
        if not outcomes:
            return True

        def action(r: Any) -> bool:
            pipe = r.pipeline(transaction=False)
            for event in outcomes:
                pipe.hmget(self._key("list", event.list_id), "version", "items")
            records = pipe.execute()
            pipe = r.pipeline(transaction=False)
            for event, (version, items) in zip(outcomes, records, strict=True):
                if version is not None and event.item_id in json.loads(items):
                    pipe.hincrby(self._key("counts", version.decode()), event.event, 1)
            pipe.execute()
            return True

        return self.state._call("attribute_outcomes", action) is True

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
