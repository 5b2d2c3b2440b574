"""Attempts at Redis, counted in redis-py: how many replies this process's clients waited for."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from redis.connection import AbstractConnection


class RedisReads:
    """A thread-safe count of the replies waited for (`count`)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


def count_redis_reads(monkeypatch: pytest.MonkeyPatch) -> RedisReads:
    """Count, until the test ends, every reply a redis-py connection of this process waits for.

    A call to a frozen Redis waits for one reply (its command's, or the handshake's of a new
    connection) until its socket timeout, then fails: the count is how many calls tried Redis.
    """
    reads = RedisReads()
    read_response = AbstractConnection.read_response

    def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        reads.add()
        return read_response(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "read_response", counted)
    return reads
