"""Live events of handoffs (queue changes, agent messages, typing) and how they travel.

Two channels: `QUEUE_CHANNEL` for the agent console, `session_channel(id)` for one customer's
widget. `EventBus` is the contract; `MemoryEventBus` works within one process,
`redis_handoff.RedisEventBus` across workers through Redis pub/sub.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

QUEUE_CHANNEL = "queue"


def session_channel(session_id: str) -> str:
    return f"session:{session_id}"


class EventBus(Protocol):
    def publish(self, channel: str, event: dict[str, Any]) -> None: ...

    def listen(
        self, channels: list[str], *, seconds: float, tick_s: float = 1.0
    ) -> Iterator[dict[str, Any] | None]:
        """Events on `channels` for `seconds`; None every `tick_s` without one (a keep-alive).

        The first item is None as soon as the subscription is in place: take it before telling
        the client it is connected, so no event published after that is missed.
        """
        ...


class MemoryEventBus:
    """Subscribers of this process, each with its own queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[frozenset[str], queue.Queue[dict[str, Any]]]] = []

    def publish(self, channel: str, event: dict[str, Any]) -> None:
        with self._lock:
            targets = [q for channels, q in self._subscribers if channel in channels]
        for target in targets:
            target.put(event)

    def listen(
        self, channels: list[str], *, seconds: float, tick_s: float = 1.0
    ) -> Iterator[dict[str, Any] | None]:
        subscriber: tuple[frozenset[str], queue.Queue[dict[str, Any]]] = (
            frozenset(channels),
            queue.Queue(),
        )
        with self._lock:
            self._subscribers.append(subscriber)
        deadline = time.monotonic() + seconds
        try:
            yield None
            while time.monotonic() < deadline:
                try:
                    yield subscriber[1].get(timeout=tick_s)
                except queue.Empty:
                    yield None
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)
