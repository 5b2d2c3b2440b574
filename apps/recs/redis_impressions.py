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


class RedisImpressionStore:
    def __init__(
        self, state: RedisState, *, log_limit: int = 100_000, list_ttl_seconds: int = 86_400
    ) -> None:
        self.state = state
        self.log_limit = log_limit
        self.list_ttl_seconds = list_ttl_seconds

    def _key(self, *parts: str) -> str:
        return self.state._key("impressions", *parts)

    def _ab_key(self, variant: str, version: str) -> str:
        return self._key("ab", variant, version)

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
                    record,
                    mapping={
                        "version": version,
                        "variant": impression.variant,
                        "items": json.dumps(impression.items),
                        "user": impression.user_id,
                    },
                )
                pipe.expire(record, self.list_ttl_seconds)
                ab = self._ab_key(impression.variant, version)
                for key in (self._key("counts", version), ab):
                    pipe.hincrby(key, "lists", 1)
                    pipe.hincrby(key, "shown", len(impression.items))
                pipe.sadd(self._key("versions"), version)
                pipe.sadd(self._key("ab"), json.dumps([impression.variant, version]))
            pipe.execute()
            return True

        return self.state._call("add_impressions", action) is True

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
