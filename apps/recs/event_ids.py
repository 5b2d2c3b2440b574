"""Posted events the client sent before (same `event_id`): a retry after a timeout counts once.

Ids are claimed in Redis (`event-id:<id>`, SET NX, kept a day), so every worker sees them;
while Redis is unavailable this worker remembers the last `local_limit` ids it took.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from threefold.apps.recs.events import Event
from threefold.apps.recs.redis_state import WRITE_GUARD_SECONDS, RedisState

# not shorter than the write guard (`event-written:c:<id>`): an id posted again once its claim
# has expired is a new event, and must not find the old event's guard and be skipped
ID_TTL_SECONDS = WRITE_GUARD_SECONDS


class EventIds:
    """Filters out events whose `event_id` was posted before (events without one all pass)."""

    def __init__(
        self, redis: RedisState, *, ttl_seconds: int = ID_TTL_SECONDS, local_limit: int = 100_000
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.local_limit = local_limit
        self._local: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_seen(self, events: Sequence[Event]) -> list[Event]:
        """The events not posted before, in order."""
        ids = [e.event_id for e in events if e.event_id]
        if not ids:
            return list(events)
        claimed = self.redis.claim_event_ids(ids, self.ttl_seconds) if self.redis.url else None
        firsts = iter(self._claim_locally(ids) if claimed is None else claimed)
        return [e for e in events if not e.event_id or next(firsts)]

    def _claim_locally(self, ids: Sequence[str]) -> list[bool]:
        firsts = []
        with self._lock:
            for event_id in ids:
                firsts.append(event_id not in self._local)
                self._local[event_id] = None
                self._local.move_to_end(event_id)
            while len(self._local) > self.local_limit:
                self._local.popitem(last=False)
        return firsts
