"""A Redis outage logs the agent desk's unavailability once, not at every chat of it."""

from __future__ import annotations

import logging
import time

import pytest
from support.services import frozen

from threefold.apps.qa.resources import EXTENSION_KEY
from threefold.core.redis_breaker import breaker_for

pytestmark = pytest.mark.integration
RETRY_S = 60.0
DESK_DOWN = "agent desk unavailable"


def chat(client) -> dict:
    response = client.post("/api/chat", json={"message": "Is shipping free?"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_each_outage_warns_once_that_the_bot_answers_without_the_desk(
    make_app, hung_redis, caplog
) -> None:
    app = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=RETRY_S)
    client = app.test_client()
    breaker = breaker_for(app.extensions[EXTENSION_KEY].redis)
    assert "degraded" not in chat(client)
    with caplog.at_level(logging.WARNING, logger="threefold.apps.qa.chat"):
        for outage in (1, 2):
            with frozen(hung_redis):
                replies = [chat(client) for _ in range(5)]
                assert [r.get("degraded") for r in replies] == ["redis unavailable"] * 5
            assert caplog.text.count(DESK_DOWN) == outage, caplog.text
            skew = outage * RETRY_S  # the retry time has passed: the next chat probes Redis
            breaker.clock = lambda skew=skew: time.monotonic() + skew
            assert "degraded" not in chat(client)
            assert not breaker.is_open
    assert "TimeoutError" in caplog.text


def test_an_outage_no_chat_saw_end_warns_again_at_the_next(make_app, hung_redis, caplog) -> None:
    """The desk's warning follows the Redis breaker's outages: Redis answered again (a
    /healthz ping closed the breaker) with no chat in between, then froze again."""
    app = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=RETRY_S)
    client = app.test_client()
    breaker = breaker_for(app.extensions[EXTENSION_KEY].redis)
    assert "degraded" not in chat(client)
    with caplog.at_level(logging.INFO, logger="threefold"):
        for outage in (1, 2):
            with frozen(hung_redis):
                assert chat(client)["degraded"] == "redis unavailable"
            assert caplog.text.count(DESK_DOWN) == outage, caplog.text
            breaker.clock = lambda skew=outage * RETRY_S: time.monotonic() + skew
            assert client.get("/healthz").json["redis"] == "ok"  # the probe: Redis is back
            assert caplog.text.count("redis answers again") == outage
