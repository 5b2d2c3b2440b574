"""The demo's alerts consumer thread on the embedded broker and Redis: a runner stopped by an
error is restarted with backoff, each restart logged, and the hub's /healthz says the consumer
is down meanwhile (503 and why), then ok once it runs again; a Redis outage, which the runner
waits out by itself, is a 503 "dependency_down" with the reason while it lasts."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pytest
from kafka import KafkaProducer
from support.alerts_setup import NeutralScorer, alerts_test_config
from support.services import frozen

from threefold.apps.alerts.consumer import build_runner
from threefold.apps.demo.config import HubConfig
from threefold.apps.demo.stack import ConsumerThread
from threefold.apps.demo.web.app import create_app
from threefold.streaming.connections import RedisSettings
from threefold.streaming.runner import DependencyRefused

pytestmark = pytest.mark.integration
SAFETY_S = 60.0  # a broken consumer fails the test instead of hanging it (not an assertion)
FIRST_RESTART_S = 1.5  # long enough for the test to see the consumer down
FAILURES = 2
REDIS_TIMEOUT_S = 1  # the consumer's socket timeout: a frozen Redis fails each call after it


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {SAFETY_S} s: {what}"
        time.sleep(0.05)


def test_a_consumer_stopped_by_an_error_is_restarted_and_the_hub_says_it_is_down_meanwhile(
    kafka_bootstrap, redis_url, redis_prefix, unique_name, caplog
) -> None:
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    runner, processor = build_runner(config, RedisSettings(url=redis_url), scorer=NeutralScorer())
    injected: list[str] = []
    assigned: list[object] = []
    close_quiet_windows, take_partitions = processor.on_idle, processor.on_partitions_assigned

    def on_partitions_assigned(partitions) -> None:
        assigned.extend(partitions)
        take_partitions(partitions)

    def on_idle() -> None:
        """The processor's idle hook, refused by Redis FAILURES times (once the runner has
        its partition: a member that leaves in the middle of joining leaves the embedded
        broker's group rebalancing for a long while)."""
        if assigned and len(injected) < FAILURES:
            assigned.clear()
            injected.append("WRONGPASS (injected by the test)")
            raise DependencyRefused(injected[-1])  # as Redis refusing the consumer
        close_quiet_windows()

    processor.on_partitions_assigned = on_partitions_assigned  # type: ignore[method-assign]
    processor.on_idle = on_idle  # type: ignore[method-assign]
    consumer = ConsumerThread(runner, processor, first_restart_s=FIRST_RESTART_S)
    hub = create_app(HubConfig(), consumer_health=consumer.health).test_client()
    caplog.set_level(logging.ERROR, logger="threefold.apps.demo.stack")
    down: list[dict] = []

    def hub_says_restarting() -> bool:
        response = hub.get("/healthz")
        if response.status_code == 503 and response.get_json()["alerts_consumer"] == "restarting":
            down.append(response.get_json())
        return bool(down)

    consumer.start()
    try:
        wait_for(hub_says_restarting, "the hub to report the consumer restarting")
        assert down[0]["status"] == "degraded"
        assert "DependencyRefused: WRONGPASS" in down[0]["reason"]
        wait_for(lambda: consumer.restarts == FAILURES, "the second failure")
        wait_for(lambda: hub.get("/healthz").status_code == 200, "the consumer to run again")
        assert hub.get("/healthz").get_json() == {
            "status": "ok",
            "alerts_consumer": "running",
            "restarts": FAILURES,
        }
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for i in range(3):
            body = {"id": f"m{i}", "text": "Quantive news", "published_at": 1_714_550_400 + i}
            producer.send(config.input_topic, json.dumps(body).encode())
        producer.flush()
        producer.close()
        wait_for(lambda: consumer.processed >= 3, "the restarted consumer to process news")
    finally:
        consumer.stop()
    restarts = [
        r.fields
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "alerts_consumer_restart"
    ]
    assert [(r["restart"], r["delay_s"]) for r in restarts] == [
        (1, FIRST_RESTART_S),
        (2, 2 * FIRST_RESTART_S),  # twice as long after a second failure in a row
    ]
    stopped = hub.get("/healthz")
    assert stopped.status_code == 503
    assert stopped.get_json()["alerts_consumer"] == "stopped"


def test_the_hub_says_the_consumer_waits_for_its_redis_while_redis_is_down(
    kafka_bootstrap, hung_redis, redis_prefix, unique_name
) -> None:
    """The runner retries a Redis outage by itself (its thread goes on): the hub reports the
    runner's own status, not "running"."""
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    redis = RedisSettings(url=f"{hung_redis.url}?socket_timeout={REDIS_TIMEOUT_S}")
    runner, processor = build_runner(config, redis, scorer=NeutralScorer())
    consumer = ConsumerThread(runner, processor)
    hub = create_app(HubConfig(), consumer_health=consumer.health).test_client()
    consumer.start()
    try:
        wait_for(lambda: hub.get("/healthz").status_code == 200, "the consumer to run")
        with frozen(hung_redis):
            wait_for(lambda: runner.status().state == "dependency_down", "the runner to wait")
            during = hub.get("/healthz")
        wait_for(lambda: hub.get("/healthz").status_code == 200, "the consumer to run again")
    finally:
        consumer.stop()
    assert during.status_code == 503
    body = during.get_json()
    assert (body["status"], body["alerts_consumer"], body["restarts"]) == (
        "degraded",
        "dependency_down",
        0,
    )
    assert body["reason"].startswith("the alerts consumer's Redis is down since ")
    assert "Redis state store failed" in body["reason"]
    assert "it retries by itself" in body["reason"]
