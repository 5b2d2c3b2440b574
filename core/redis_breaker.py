"""One circuit breaker per Redis client in a process, shared by everything that uses the client.

A Redis that does not answer (stopped, a VM paused, a network that drops packets) holds each
call for the client's socket timeout. So after a connection failure or a timeout of any call the
breaker opens: every call skips Redis (`BreakerOpen`, or the caller's fallback) for `retry_s`.
Then it is half-open: the next call is the single probe, while every other call keeps skipping
Redis; the probe's success closes the breaker, its failure opens it for another `retry_s`. A
request thus waits for one timeout at the start of an outage, and one per `retry_s` per process
after that, instead of one per call. Only connection failures and timeouts count: an error reply
is Redis answering, so bad data never opens it.

`breaker_for(client)` gives the breaker of a client, so the rate limiter (`core.rate_limit`) and
an app's own stores that use the same client open and close together. Calls need a client with
a socket timeout (redis-py's default is 5 s): a probe that never returns keeps the breaker open.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from threefold.core.errors import first_line

logger = logging.getLogger(__name__)
T = TypeVar("T")
# what says Redis did not answer (an error reply is an answer); OSError: a socket's own errors
CONNECTION_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)
DEFAULT_RETRY_S = 5.0


class BreakerOpen(RedisConnectionError):
    """Redis was not asked: it did not answer a moment ago (a redis ConnectionError, so error
    handlers treat it as Redis unreachable)."""


@dataclass(frozen=True)
class Failure:
    """The call that opened the breaker and how it failed (kept as text: no traceback held)."""

    operation: str
    error_type: str
    message: str

    @classmethod
    def of(cls, operation: str, error: BaseException) -> Failure:
        return cls(operation, type(error).__name__, first_line(error)[:200])


class RedisBreaker:
    """Skips Redis for `retry_s` after a connection failure, then lets one probe through.

    `clock` is read for every decision (tests replace it). Counters: `attempts` (calls let
    through to Redis), `probes` (of those, the half-open probes), `failures` (connection
    failures seen), `skipped` (calls not let through) and `outages` (times it opened).
    """

    def __init__(
        self, *, retry_s: float = DEFAULT_RETRY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if retry_s < 0:
            raise ValueError(f"retry_s must be >= 0, found {retry_s}")
        self.retry_s = retry_s
        self.clock = clock
        self.attempts = self.probes = self.failures = self.skipped = self.outages = 0
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._opened_at = 0.0
        self._cause: Failure | None = None
        self._told: dict[str, int] = {}  # user -> the outage it last heard of (`first_fallback`)

    @property
    def is_open(self) -> bool:
        """Whether calls skip Redis now (open, or half-open until a probe succeeds)."""
        with self._lock:
            return self._open_until is not None

    @property
    def skipping(self) -> bool:
        """Whether a call now would skip Redis (open until `retry_s` has passed, or a probe in
        flight); asks Redis nothing and takes no probe's place."""
        with self._lock:
            until = self._open_until
            return until is not None and (self._probing or self.clock() < until)

    def call(self, operation: str, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        """`primary()` unless the breaker skips Redis or it fails to reach it; then `fallback()`."""
        try:
            with self.attempt(operation):
                return primary()
        except CONNECTION_FAILURES:
            return fallback()

    @contextmanager
    def attempt(self, operation: str, *, always: bool = False) -> Iterator[None]:
        """Run the block, which calls Redis, unless the breaker skips it (raises `BreakerOpen`).

        A connection failure in the block opens the breaker and goes on up. `always`: run it
        even while the breaker is open, for a call whose alternative is worse than a timeout (it
        is never the probe: its success leaves the breaker as it is, its failure counts).
        """
        probe = self._admit(always)
        try:
            yield
        except BreakerOpen:
            self._release(probe)
            raise
        except CONNECTION_FAILURES as exc:
            self._failed(operation, exc, probe)
            raise
        except BaseException:  # Redis answered, or the block failed before asking it
            self._release(probe)
            raise
        if probe:
            self._close()

    def first_fallback(self, user: str) -> Failure | None:
        """The failure that opened the breaker the first time `user` asks in this outage, else
        None: each user of a shared breaker logs one warning per outage."""
        with self._lock:
            if self._cause is None or self._told.get(user) == self.outages:
                return None
            self._told[user] = self.outages
            return self._cause

    def _admit(self, always: bool) -> bool:
        """Whether the caller is the probe; BreakerOpen when it must skip Redis."""
        with self._lock:
            if self._open_until is None or always:
                self.attempts += 1
                return False
            if self._probing or self.clock() < self._open_until:
                self.skipped += 1
                raise BreakerOpen(self._skip_reason())
            self._probing = True
            self.attempts += 1
            self.probes += 1
            return True

    def _skip_reason(self) -> str:
        cause = self._cause or Failure("a call", "ConnectionError", "")
        return (
            f"redis not asked: it did not answer {cause.operation} a moment ago "
            f"({cause.error_type}: {cause.message}); one call every {self.retry_s:g} s tries it"
        )

    def _failed(self, operation: str, error: BaseException, probe: bool) -> None:
        with self._lock:
            self.failures += 1
            now = self.clock()
            if self._open_until is None:
                self.outages += 1
                self._opened_at = now
                self._cause = Failure.of(operation, error)
            self._open_until = now + self.retry_s
            if probe:
                self._probing = False

    def _release(self, probe: bool) -> None:
        """A probe that learnt nothing (an error reply, or none sent): the next call probes."""
        if probe:
            with self._lock:
                self._probing = False

    def _close(self) -> None:
        with self._lock:
            self._open_until = None
            self._probing = False
            down_s = self.clock() - self._opened_at
        logger.info("redis answers again (it did not for %.1f s)", down_s)


_breakers: weakref.WeakKeyDictionary[Any, RedisBreaker] = weakref.WeakKeyDictionary()
_breakers_lock = threading.Lock()


def breaker_for(client: Any, *, retry_s: float = DEFAULT_RETRY_S) -> RedisBreaker:
    """The breaker of `client` in this process; the first caller's `retry_s` sets its pause.

    Kept as long as the client is: every component given the same client shares it.
    """
    with _breakers_lock:
        breaker = _breakers.get(client)
        if breaker is None:
            breaker = _breakers[client] = RedisBreaker(retry_s=retry_s)
        return breaker
