"""The alerts publisher, as the consumer wires it, with its broker frozen (SIGSTOP) between
noting the alerts topic's end offsets and sending: publishing gives the consumer thread back
within its share of max_poll_interval_ms, and closing at shutdown ends within its timeout and
says how many alerts it leaves undelivered. Either way the alert stays in the Redis outbox and
goes out exactly once when the broker is back."""

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
from threefold.apps.alerts.processor import PUBLISH_TIMEOUT_S, AlertPublisher
from threefold.streaming import kafka_config
from threefold.streaming.connections import RedisSettings
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.services import KafkaService

pytestmark = pytest.mark.integration
POLL_INTERVAL_MS = 6000  # the publisher's budget: 3 s; its flush timeout alone was 10 s
SLACK_S = 4.0  # thread start-up and a busy machine
FIRST = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}
SECOND = {**FIRST, "alert_id": "a-2", "key": "entity:APXR"}


def consumer_publisher(
    broker: KafkaService, redis_url: str, redis_prefix: str, monkeypatch
) -> AlertPublisher:
    """The publisher `build_runner` wires, for a consumer with POLL_INTERVAL_MS."""
    monkeypatch.setitem(kafka_config.CONSUMER_DEFAULTS, "max_poll_interval_ms", POLL_INTERVAL_MS)
    config = AlertsConfig(
        bootstrap_servers=broker.bootstrap_servers, redis_prefix=redis_prefix, alerts_topic="alerts"
    )
    _, processor = build_runner(config, RedisSettings(url=redis_url), scorer=object())
    return processor.publisher


@pytest.fixture
def frozen_before_the_send(own_broker, redis_url, redis_prefix, monkeypatch) -> AlertPublisher:
    """A publisher that published a-1 (connected, the topic's metadata known); a-2 is pending,
    and the broker freezes right after the publisher notes the topic's end offsets for it."""
    ensure_topics(own_broker.bootstrap_servers, ["alerts"])
    publisher = consumer_publisher(own_broker, redis_url, redis_prefix, monkeypatch)
    store = publisher.store
    store.claim_alert(dict(FIRST), cooldown_s=0)
    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]
    store.claim_alert(dict(SECOND), cooldown_s=0)
    mark_sending = store.mark_sending

    def mark_then_freeze(alerts, offsets) -> None:
        mark_sending(alerts, offsets)
        os.kill(own_broker.pid, signal.SIGSTOP)

    monkeypatch.setattr(store, "mark_sending", mark_then_freeze)
    return publisher


def on_a_thread(call, bound_s: float) -> list:
    """Run `call()` on a thread; assert it returned within `bound_s`; [its result]."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    thread.join(bound_s)
    assert not thread.is_alive(), f"still waiting for the broker after {bound_s} s"
    return outcome


def events(caplog, name: str) -> list[dict]:
    fields = [getattr(record, "fields", {}) for record in caplog.records]
    return [f for f in fields if f.get("event") == name]


def alert_ids_in_topic(broker: KafkaService) -> list[str]:
    records = read_topic_records(broker.bootstrap_servers, "alerts")
    return sorted(json.loads(r.value)["alert_id"] for r in records)


def test_publishing_on_a_frozen_broker_gives_the_consumer_thread_back_in_time(
    own_broker, frozen_before_the_send, caplog
):
    publisher = frozen_before_the_send
    caplog.set_level(logging.WARNING, logger="threefold.apps.alerts.processor")
    try:
        # the consumer polls again within max_poll_interval_ms: it stays in its group
        outcome = on_a_thread(publisher.publish_pending, POLL_INTERVAL_MS / 1000)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)

    assert outcome == [[]]
    assert [a["alert_id"] for a in publisher.store.pending_alerts()] == ["a-2"]  # kept
    (event,) = events(caplog, "alerts_publish_out_of_time")
    assert (event["in_flight"], event["released"]) == (["a-2"], [])
    assert event["budget_s"] <= POLL_INTERVAL_MS / 1000 / 2
    metric = "threefold_alerts_publish_out_of_time_total"
    assert publisher.metrics.registry.get_sample_value(metric) == 1

    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-2"]  # the broker is back
    publisher.close()
    assert publisher.store.pending_alerts() == []
    assert alert_ids_in_topic(own_broker) == ["a-1", "a-2"]


def test_closing_on_a_frozen_broker_ends_in_time_and_says_what_it_leaves_undelivered(
    own_broker, frozen_before_the_send, redis_url, redis_prefix, monkeypatch, caplog
):
    publisher = frozen_before_the_send
    caplog.set_level(logging.WARNING, logger="threefold.apps.alerts.processor")
    try:
        publisher.publish_pending()  # a-2 is in flight when the consumer is told to stop
        on_a_thread(publisher.close, PUBLISH_TIMEOUT_S + SLACK_S)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)

    (event,) = events(caplog, "alerts_undelivered_at_close")
    assert (event["undelivered"], event["alert_ids"]) == (1, ["a-2"])
    assert "not acknowledged by Kafka" in caplog.text and "not lost" in caplog.text
    # Back in the outbox, free at once: the next consumer publishes it, looking for it in the
    # topic first (the frozen broker may have taken the send), so it is there exactly once.
    following = consumer_publisher(own_broker, redis_url, redis_prefix, monkeypatch)
    assert [a["alert_id"] for a in following.publish_pending()] == ["a-2"]
    following.close()
    assert alert_ids_in_topic(own_broker) == ["a-1", "a-2"]
