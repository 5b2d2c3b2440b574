"""Ranked lists kept for the pages after the first (`next_cursor` continues the same list)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from threefold.apps.recs.redis_state import RedisState

SNAPSHOT_TTL_SECONDS = 15 * 60
LOCAL_SNAPSHOTS = 128  # kept per process while Redis takes none (~15 KB each by default)


class Snapshots:
    """The ranked lists first pages were cut from, kept `ttl_seconds` for the pages after:
    in Redis (every worker reads them) when it takes them, else in this process (the least
    recently used dropped past `local_limit`; a cursor reaching another worker finds none)."""

    def __init__(
        self,
        redis: RedisState,
        *,
        ttl_seconds: int = SNAPSHOT_TTL_SECONDS,
        local_limit: int = LOCAL_SNAPSHOTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.local_limit = local_limit
        self.clock = clock
        self._local: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, snapshot: dict[str, Any]) -> str:
        """Keep `snapshot`; returns its new random id."""
        snapshot_id = secrets.token_urlsafe(12)
        if not self.redis.put_snapshot(snapshot_id, snapshot, self.ttl_seconds):
            with self._lock:
                self._local[snapshot_id] = (self.clock() + self.ttl_seconds, snapshot)
                while len(self._local) > self.local_limit:
                    self._local.popitem(last=False)
        return snapshot_id

    def get(self, snapshot_id: str) -> dict[str, Any] | None:
        """The snapshot kept under `snapshot_id`; None when unknown or expired."""
        with self._lock:
            expires, snapshot = self._local.pop(snapshot_id, (None, None))
            if expires is not None and expires > self.clock():
                self._local[snapshot_id] = (expires, snapshot)
                return snapshot
        return self.redis.get_snapshot(snapshot_id)
