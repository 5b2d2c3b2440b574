"""Dashboard polls and /healthz while the consumer's Redis hangs: a short socket timeout, and a
503 at once (with the reason) after the first timeout."""

from __future__ import annotations

import time

import pytest
from support.concurrency import at_once
from support.redis_reads import count_redis_reads
from support.services import frozen

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import DASHBOARD_REDIS_TIMEOUT_S, Resources, open_resources
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.apps.alerts.web import create_app
from threefold.apps.alerts.web.api import _keepalive_s
from threefold.core.redis_breaker import breaker_for
from threefold.streaming.connections import RedisSettings, redis_client

pytestmark = pytest.mark.integration

POLLS = 8


def test_polls_of_a_hung_redis_answer_503_and_only_one_per_retry_window_waits(
    hung_redis, redis_prefix: str, monkeypatch
) -> None:
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    client = redis_client(
        RedisSettings(url=hung_redis.url), decode_responses=True, socket_timeout=0.3
    )
    app = create_app(
        config, Resources(settings=config, store=RedisStateStore(client, redis_prefix))
    )

    def poll():
        return app.test_client().get("/api/keys")

    assert poll().status_code == 200
    reads = count_redis_reads(monkeypatch)
    with frozen(hung_redis):
        assert poll().status_code == 503  # after one timeout (the rate limit's)
        tried = reads.count
        polls = at_once([poll] * POLLS)
        assert [p.status_code for p in polls] == [503] * POLLS
        assert reads.count == tried  # answered without asking Redis
        answer = polls[0]
        assert answer.get_json()["redis"] == "unreachable"
        assert "did not answer" in answer.get_json()["message"]
        assert int(answer.headers["Retry-After"]) > 0
        breaker = breaker_for(client)
        breaker.clock = lambda: time.monotonic() + breaker.retry_s  # the retry time has passed
        assert [p.status_code for p in at_once([poll] * POLLS)] == [503] * POLLS
        assert reads.count == tried + 1  # one probe
    breaker.clock = lambda: time.monotonic() + 2 * breaker.retry_s
    assert poll().status_code == 200


PROBES = 8


def test_healthz_of_a_hung_redis_asks_it_once_then_answers_from_the_breaker(
    hung_redis, redis_prefix: str, monkeypatch
) -> None:
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    resources = open_resources(config, RedisSettings(url=hung_redis.url))
    client = resources.store.client
    assert client.connection_pool.connection_kwargs["socket_timeout"] == DASHBOARD_REDIS_TIMEOUT_S
    assert resources.signals.client is client  # one client, one breaker
    assert _keepalive_s(resources.store) <= DASHBOARD_REDIS_TIMEOUT_S / 2  # the feed's XREAD
    app = create_app(config, resources)

    def probe():
        return app.test_client().get("/healthz")

    assert probe().get_json()["redis"] == "ok"  # 503 all the same: no consumer runs
    reads = count_redis_reads(monkeypatch)
    with frozen(hung_redis):
        first = probe()
        assert (first.status_code, first.get_json()["redis"]) == (503, "unreachable")
        assert "TimeoutError" in first.get_json()["reason"]
        tried = reads.count
        probes = at_once([probe] * PROBES)
        assert reads.count == tried  # none of them asked Redis
        assert [p.status_code for p in probes] == [503] * PROBES
        body = probes[0].get_json()
        assert body["redis"] == "unreachable"
        assert "BreakerOpen" in body["reason"] and "did not answer healthz" in body["reason"]
