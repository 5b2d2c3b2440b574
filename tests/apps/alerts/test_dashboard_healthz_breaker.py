"""The dashboard's /healthz while the consumer's Redis hangs: a short socket timeout, and the
client's breaker answers every probe after the first at once, with the reason."""

from __future__ import annotations

import pytest
from support.concurrency import at_once
from support.redis_reads import count_redis_reads
from support.services import frozen

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import DASHBOARD_REDIS_TIMEOUT_S, open_resources
from threefold.apps.alerts.web import create_app
from threefold.apps.alerts.web.api import _keepalive_s
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration

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
