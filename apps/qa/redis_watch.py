"""Read-modify-write of one Redis key without losing a concurrent writer's change (WATCH/MULTI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis

T = TypeVar("T")
Queue = Callable[[Any], object]
"""Queues the writes on a MULTI pipeline."""


def update_watched(
    client: Any, key: str, change: Callable[[bytes | None], tuple[T, Queue | None]]
) -> T:
    """`change(raw value of key)` gives (result, writes to queue or None); the writes run in one
    MULTI, and the whole read-change-write is retried whenever another client changed `key`
    in between. Returns the result."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                result, queue = change(pipe.get(key))
                if queue is not None:
                    pipe.multi()
                    queue(pipe)
                    pipe.execute()
                return result
            except redis.WatchError:
                continue
