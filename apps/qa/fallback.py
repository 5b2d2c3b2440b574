"""Answering through a Redis outage: session and feedback stores that fall back to memory.

`RedisFallback` runs a Redis call and, when Redis is unreachable (connection refused, timeout),
runs the in-memory twin instead and opens a circuit breaker so the next calls skip Redis for
`retry_s`. Only connection failures open it: bad data (a corrupt value, a Redis error reply)
still raises, so a hostile request never takes Redis away from everyone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from threefold.apps.qa.feedback import MemoryRecordLog, RecordLog
from threefold.apps.qa.sessions import (
    MemorySessionStore,
    Session,
    SessionChange,
    SessionStore,
    valid_session_id,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
CONNECTION_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)
DEGRADED_REASON = "redis unavailable"


class RedisFallback:
    """A circuit breaker around Redis calls: open for `retry_s` after a connection failure."""

    def __init__(self, *, retry_s: float = 5.0) -> None:
        self.retry_s = retry_s
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def degraded_reason(self) -> str | None:
        """ "redis unavailable" while the breaker is open, else None."""
        return DEGRADED_REASON if self.is_open else None

    def call(self, operation: str, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        """`primary()` unless the breaker is open or Redis is unreachable; then `fallback()`."""
        if self.is_open:
            return fallback()
        try:
            return primary()
        except CONNECTION_FAILURES as exc:
            with self._lock:
                first = not self.is_open
                self._open_until = time.monotonic() + self.retry_s
            if first:
                logger.warning(
                    "redis unavailable during %s (%s: %s); answering without it for %.0fs",
                    operation,
                    type(exc).__name__,
                    exc,
                    self.retry_s,
                )
            return fallback()


class FallbackSessionStore:
    """A `SessionStore` in Redis that keeps answering from memory while Redis is down.

    During an outage a known session id this worker never saw comes back empty (a stateless
    turn: no memory of earlier messages) rather than as unknown.
    """

    def __init__(
        self, primary: SessionStore, memory: MemorySessionStore, breaker: RedisFallback
    ) -> None:
        self.primary = primary
        self.memory = memory
        self.breaker = breaker

    def create(self) -> Session:
        return self.breaker.call("create_session", self.primary.create, self.memory.create)

    def get(self, session_id: str) -> Session | None:
        if not valid_session_id(session_id):
            return None

        def from_memory() -> Session:
            return self.memory.get(session_id) or Session(id=session_id, created=time.time())

        return self.breaker.call("get_session", lambda: self.primary.get(session_id), from_memory)

    def save(self, session: Session) -> None:
        self.breaker.call(
            "save_session", lambda: self.primary.save(session), lambda: self.memory.save(session)
        )

    def update(self, session_id: str, change: SessionChange) -> Session | None:
        def in_memory() -> Session | None:
            if not valid_session_id(session_id):
                return None
            session = self.memory.update(session_id, change)
            if session is None:  # as in `get`: a session this worker never saw starts empty
                session = Session(id=session_id, created=time.time())
                change(session)
                self.memory.save(session)
            return session

        return self.breaker.call(
            "update_session", lambda: self.primary.update(session_id, change), in_memory
        )


class FallbackRecordLog:
    """A `RecordLog` in Redis that keeps records in this process while Redis is down.

    The records kept meanwhile are written to Redis by the first call that reaches it again.
    """

    def __init__(self, primary: RecordLog, memory: MemoryRecordLog, breaker: RedisFallback) -> None:
        self.primary = primary
        self.memory = memory
        self.breaker = breaker

    def append(self, name: str, record: dict[str, Any]) -> None:
        def to_redis() -> None:
            self._flush()
            self.primary.append(name, record)

        self.breaker.call("append_" + name, to_redis, lambda: self.memory.append(name, record))

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        def from_redis() -> list[dict[str, Any]]:
            self._flush()
            return list(self.primary.read(name))

        records = self.breaker.call(
            "read_" + name, from_redis, lambda: list(self.memory.read(name))
        )
        yield from records

    def _flush(self) -> None:
        """Move the records kept in memory during an outage to Redis (back on a failure)."""
        pending = self.memory.drain()
        for position, (name, record) in enumerate(pending):
            try:
                self.primary.append(name, record)
            except BaseException:
                for unsent_name, unsent in pending[position:]:
                    self.memory.append(unsent_name, unsent)
                raise
        if pending:
            logger.info("redis is back: %d records kept in memory written to it", len(pending))
