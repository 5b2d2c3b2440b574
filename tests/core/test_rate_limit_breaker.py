"""The shared rate limit behind a hung Redis: concurrent requests wait for it once per window."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from support.concurrency import at_once
from support.redis_reads import count_redis_reads
from support.services import frozen

from threefold.core.rate_limit import SharedRateLimiter
from threefold.core.redis_breaker import breaker_for

pytestmark = pytest.mark.integration

REQUESTS = 16


def test_concurrent_requests_ask_a_hung_redis_once_per_retry_window(
    hung_redis, redis_prefix: str, monkeypatch, caplog
) -> None:
    client = redis.Redis.from_url(hung_redis.url, socket_timeout=0.3)
    try:
        limiter = SharedRateLimiter(client, prefix=redis_prefix, rate_per_minute=6000, retry_s=5)
        breaker = breaker_for(client)
        assert limiter.acquire("a") == 0
        reads = count_redis_reads(monkeypatch)
        with frozen(hung_redis), caplog.at_level(logging.WARNING):
            assert limiter.acquire("a") == 0  # one timeout, then the per-process bucket
            tried = reads.count
            assert breaker.is_open
            assert at_once([lambda: limiter.acquire("a")] * REQUESTS) == [0.0] * REQUESTS
            assert reads.count == tried
            breaker.clock = lambda: time.monotonic() + 5  # the retry time has passed
            assert at_once([lambda: limiter.acquire("a")] * REQUESTS) == [0.0] * REQUESTS
            assert reads.count == tried + 1  # one probe
        assert caplog.text.count("per-process limits") == 1  # one warning per outage
        breaker.clock = lambda: time.monotonic() + 10
        assert limiter.acquire("a") == 0
        assert not breaker.is_open
        assert limiter.breaker is breaker  # the app's other uses of the client share it
    finally:
        client.close()
