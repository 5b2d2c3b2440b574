"""The alerts publisher, as the consumer wires it, when its broker restarts or stays away.

A restarted broker forgets the idempotent producer's id (tansu keeps nothing; a real Kafka may
expire or fence one): the publisher's Kafka producer is replaced, and the alerts waiting in the
Redis outbox go out without a process restart. A publisher closed while its last tries failed
says, in `alerts_undelivered_at_close`, which alerts it leaves in the outbox."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from support.services import read_topic_records

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.processor import AlertPublisher
from threefold.streaming import kafka_config
from threefold.streaming.connections import RedisSettings
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.services import KafkaService, start_kafka

pytestmark = pytest.mark.integration
POLL_INTERVAL_MS = 6000  # the publisher's budget per call: 3 s
TRIES = 5  # publishing calls after the restart (the consumer makes one per batch or idle tick)
FIRST = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}
SECOND = {**FIRST, "alert_id": "a-2", "key": "entity:APXR"}


@pytest.fixture
def brokers() -> Iterator[list[KafkaService]]:
    """A broker this test may stop, and start again on its port (the list holds the current)."""
    started = [start_kafka()]
    ensure_topics(started[0].bootstrap_servers, ["alerts"])
    yield started
    started[-1].stop()


@pytest.fixture
def publisher(brokers, redis_url, redis_prefix, monkeypatch) -> AlertPublisher:
    """The publisher `build_runner` wires, after it published a-1 (connected, ids known)."""
    monkeypatch.setitem(kafka_config.CONSUMER_DEFAULTS, "max_poll_interval_ms", POLL_INTERVAL_MS)
    config = AlertsConfig(
        bootstrap_servers=brokers[0].bootstrap_servers,
        redis_prefix=redis_prefix,
        alerts_topic="alerts",
    )
    _, processor = build_runner(config, RedisSettings(url=redis_url), scorer=object())
    publisher = processor.publisher
    publisher.store.claim_alert(dict(FIRST), cooldown_s=0)
    assert ids(publisher.publish_pending()) == ["a-1"]
    return publisher


def ids(alerts: list[dict]) -> list[str]:
    return sorted(alert["alert_id"] for alert in alerts)


def port(broker: KafkaService) -> int:
    return int(broker.bootstrap_servers.rsplit(":", 1)[1])


def test_pending_alerts_go_out_after_a_broker_restart_without_a_process_restart(
    brokers, publisher
) -> None:
    bootstrap = brokers[0].bootstrap_servers
    brokers[-1].stop()  # tansu keeps nothing: the topic and the producer ids are gone
    brokers.append(start_kafka(port=port(brokers[0])))
    ensure_topics(bootstrap, ["alerts"])
    publisher.store.claim_alert(dict(SECOND), cooldown_s=0)

    published: list[dict] = []
    for _ in range(TRIES):
        published += publisher.publish_pending()
        if published:
            break
    publisher.close()

    assert ids(published) == ["a-2"], f"still pending after {TRIES} tries"
    assert publisher.store.pending_alerts() == []
    records = read_topic_records(bootstrap, "alerts")
    assert [json.loads(r.value)["alert_id"] for r in records] == ["a-2"]  # once
    replaced = publisher.metrics.registry.get_sample_value(
        "threefold_stream_producer_replaced_total", {"producer": "alerts"}
    )
    assert replaced == 1


def test_closing_after_failed_tries_names_the_alerts_left_in_the_outbox(
    brokers, publisher, caplog
) -> None:
    brokers[-1].stop()  # and stays away
    publisher.store.claim_alert(dict(SECOND), cooldown_s=0)
    assert publisher.publish_pending() == []  # failed; a-2 is back in the outbox
    caplog.set_level(logging.INFO, logger="threefold.apps.alerts.processor")

    publisher.close()

    fields = [getattr(record, "fields", {}) for record in caplog.records]
    (event,) = [f for f in fields if f.get("event") == "alerts_undelivered_at_close"]
    assert (event["undelivered"], event["alert_ids"], event["kept_in"]) == (1, ["a-2"], "outbox")
    assert "every alert it sent was acknowledged" not in caplog.text
    assert ids(publisher.store.pending_alerts()) == ["a-2"]
