"""Through a hung Redis a worker asks it once per retry window, however many chats come in.

The rate limiter, the session and record stores and the agent desk share the Redis client's
breaker: after the first timeout, concurrent chats are answered without Redis (none waits for
its socket timeout), and once the retry time has passed exactly one of them probes it.
"""

from __future__ import annotations

import logging
import time

import pytest
from support.concurrency import at_once
from support.redis_reads import count_redis_reads
from support.services import frozen

from threefold.apps.qa.resources import EXTENSION_KEY

pytestmark = pytest.mark.integration

CHATS = 16
RETRY_S = 60.0


def chat(app) -> dict:
    response = app.test_client().post("/api/chat", json={"message": "Is shipping free?"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_concurrent_chats_try_a_hung_redis_once_per_retry_window(
    make_app, hung_redis, monkeypatch, caplog
) -> None:
    app = make_app(
        redis_url=hung_redis.url,
        redis_timeout_s=0.3,
        redis_retry_s=RETRY_S,
        rate_limit_per_minute=6000,  # the limiter's script runs on every chat too
    )
    assert "degraded" not in chat(app)
    reads = count_redis_reads(monkeypatch)
    with frozen(hung_redis), caplog.at_level(logging.WARNING):
        assert chat(app)["degraded"] == "redis unavailable"  # waited for one timeout
        tried = reads.count
        replies = at_once([lambda: chat(app)] * CHATS)
        assert [r["degraded"] for r in replies] == ["redis unavailable"] * CHATS
        assert reads.count == tried  # none of them asked Redis

        from threefold.core.redis_breaker import breaker_for

        breaker = breaker_for(app.extensions[EXTENSION_KEY].redis)
        breaker.clock = lambda: time.monotonic() + RETRY_S  # the retry time has passed
        replies = at_once([lambda: chat(app)] * CHATS)
        assert [r["degraded"] for r in replies] == ["redis unavailable"] * CHATS
        assert reads.count == tried + 1  # one probe, which found Redis still hung
        assert breaker.probes == 1
    assert caplog.text.count("redis unavailable during") == 1  # one warning per outage
    assert caplog.text.count("redis unavailable for rate limits") == 1
    breaker.clock = lambda: time.monotonic() + 2 * RETRY_S
    assert "degraded" not in chat(app)  # the next probe found Redis back
    assert not breaker.is_open
