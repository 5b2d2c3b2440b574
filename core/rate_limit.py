"""Rate limits: per-client token buckets, shared by every worker through Redis when it is there.

`TokenBucketLimiter` counts in this process; `SharedRateLimiter` keeps the buckets in Redis
(one Lua script, so workers never race) and falls back to its own process-local buckets while
Redis is unreachable: it skips Redis while the client's breaker (`core.redis_breaker`, shared
with the app's other uses of that client) is open. `acquire(client)` returns 0 when the request
may go ahead, else the seconds until the client has a token again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from redis.exceptions import RedisError

from threefold.core.redis_breaker import (
    CONNECTION_FAILURES,
    DEFAULT_RETRY_S,
    Failure,
    RedisBreaker,
    breaker_for,
)
from threefold.core.redis_errors import redis_unavailable

logger = logging.getLogger(__name__)
MAX_LOCAL_CLIENTS = 100_000

# KEYS[1] bucket; ARGV: tokens per second, capacity. Returns the wait in seconds as a string.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local stamp = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""


def default_burst(rate_per_minute: int) -> int:
    """Requests a client may send at once: a quarter of the per-minute rate, at least 1."""
    return max(1, rate_per_minute // 4)


def retry_after_seconds(wait: float) -> int:
    """The `Retry-After` value for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


class TokenBucketLimiter:
    """Per-client token buckets in this process: `rate_per_minute` sustained, `burst` at once."""

    def __init__(self, rate_per_minute: int, burst: int | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute}")
        self.rate = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else default_burst(rate_per_minute))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > MAX_LOCAL_CLIENTS:
                self._buckets.clear()
            return (1.0 - tokens) / self.rate


class SharedRateLimiter:
    """Token buckets in Redis under `<prefix>ratelimit:<client>`, one limit for all workers.

    While Redis is unreachable (`breaker` open: by default the client's, `breaker_for`) or
    refuses the script (out of memory, read-only replica: then for `retry_s`) the per-process
    buckets apply, each worker then allowing the rate on its own.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        rate_per_minute: int,
        burst: int | None = None,
        retry_s: float = DEFAULT_RETRY_S,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.local = TokenBucketLimiter(rate_per_minute, burst)
        self.retry_s = retry_s
        self.breaker = breaker if breaker is not None else breaker_for(client, retry_s=retry_s)
        self._script = client.register_script(TOKEN_BUCKET_LUA)
        self._refused_until = 0.0

    def acquire(self, client: str) -> float:
        if time.monotonic() < self._refused_until:
            return self.local.acquire(client)
        return self.breaker.call(
            "rate_limit", lambda: self._shared(client), lambda: self._per_process(client)
        )

    def _shared(self, client: str) -> float:
        """The wait from the bucket in Redis; a refusal (or a bug in the script) gives the
        per-process one and leaves Redis alone for `retry_s`."""
        try:
            wait = self._script(
                keys=[f"{self.prefix}ratelimit:{client}"],
                args=[self.local.rate, self.local.capacity],
            )
            return float(wait)
        except CONNECTION_FAILURES:
            raise  # the breaker's business
        except RedisError as exc:
            self._refused_until = time.monotonic() + self.retry_s
            if not redis_unavailable(exc):
                logger.exception(
                    "the rate-limit script failed (a bug, not an outage); per-process "
                    "limits for %.0fs",
                    self.retry_s,
                )
            else:
                _warn_unavailable(Failure.of("rate_limit", exc), self.retry_s)
            return self.local.acquire(client)

    def _per_process(self, client: str) -> float:
        cause = self.breaker.first_fallback("rate limits")
        if cause is not None:
            _warn_unavailable(cause, self.breaker.retry_s)
        return self.local.acquire(client)


def _warn_unavailable(failure: Failure, retry_s: float) -> None:
    logger.warning(
        "redis unavailable for rate limits (%s: %s); per-process limits for %.0fs",
        failure.error_type,
        failure.message,
        retry_s,
    )
