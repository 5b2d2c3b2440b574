"""The alerts consumer's probe of the alerts topic gives up in time for the consumer to stay in
its group: the publisher probes on the consumer thread, which must poll again within
max_poll_interval_ms; a publishing call (an `ids_since`, then an `end_offsets`, then the sends
and the flush) waits for Kafka the poll cycle's budget at most, half of that interval."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading

import pytest
from support.services import read_topic_records

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.streaming import kafka_config
from threefold.streaming.connections import RedisSettings
from threefold.streaming.kafka_config import ensure_topics

ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}
NOWHERE = RedisSettings(url="redis://127.0.0.1:1/0")  # build_runner connects lazily


def poll_interval_s(runner) -> float:
    """The runner's consumer must poll again within this many seconds to stay in its group."""
    return int(runner._consumer_config["max_poll_interval_ms"]) / 1000


@pytest.mark.parametrize("interval_ms", [10_000, 60_000, 300_000])
def test_the_probe_timeout_leaves_the_consumer_time_to_poll_again(monkeypatch, interval_ms):
    monkeypatch.setitem(kafka_config.CONSUMER_DEFAULTS, "max_poll_interval_ms", interval_ms)
    config = AlertsConfig(bootstrap_servers="127.0.0.1:9", redis_prefix="t:")
    runner, processor = build_runner(config, NOWHERE, scorer=object())
    timeout_s = processor.publisher.probe.timeout_s
    budget_s = processor.publisher.budget_s

    assert poll_interval_s(runner) == interval_ms / 1000
    assert budget_s == runner.cycle_budget_s == poll_interval_s(runner) / 2
    assert 2 * timeout_s <= budget_s  # an ids_since and the end_offsets the publisher adds
    # No shorter than that: a slow but healthy broker must still be read back in time.
    assert timeout_s >= poll_interval_s(runner) / 4


@pytest.mark.integration
def test_a_frozen_broker_holds_the_publisher_for_at_most_half_the_poll_interval_then_it_retries(
    own_broker, redis_url, redis_prefix, caplog
):
    config = AlertsConfig(
        bootstrap_servers=own_broker.bootstrap_servers,
        redis_prefix=redis_prefix,
        alerts_topic="alerts",
    )
    runner, processor = build_runner(config, RedisSettings(url=redis_url), scorer=object())
    publisher, store = processor.publisher, processor.publisher.store
    ensure_topics(own_broker.bootstrap_servers, [config.alerts_topic])
    store.claim_alert(dict(ALERT), cooldown_s=0)
    # A publisher noted the topic's end offsets, then died: the next one reads the topic back.
    store.mark_sending(store.pending_alerts(), publisher.probe.end_offsets())
    caplog.set_level(logging.WARNING, logger="threefold.apps.alerts.processor")

    outcome: list[list[dict]] = []
    thread = threading.Thread(target=lambda: outcome.append(publisher.publish_pending()))
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        thread.start()
        thread.join(poll_interval_s(runner) / 2)
        assert not thread.is_alive(), "the probe held the consumer thread too long"
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        thread.join()

    assert outcome == [[]]
    assert [a["alert_id"] for a in store.pending_alerts()] == ["a-1"]  # kept for the next try
    assert "could not publish 1 alert(s)" in caplog.text and "will retry" in caplog.text
    assert f"did not answer within {publisher.probe.timeout_s:g} s" in caplog.text

    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]  # the broker is back
    publisher.close()
    assert store.pending_alerts() == []
    records = read_topic_records(own_broker.bootstrap_servers, config.alerts_topic)
    assert [json.loads(r.value)["alert_id"] for r in records] == ["a-1"]
