"""JsonProducer across a broker restart: the restarted broker (tansu keeps nothing; a real Kafka
may expire or fence a producer id too) no longer knows the idempotent producer's id, and
kafka-python's producer fails every send from then on (UnknownProducerIdError, then a fatal
InitProducerId). JsonProducer closes such a client and opens a new one, so the caller's next
try goes through without a process restart; the replacement is logged and counted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from support.services import read_topic_records

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer, ProducerMetrics
from threefold.streaming.services import KafkaService, start_kafka

pytestmark = pytest.mark.integration
TRIES = 5  # sends after the restart, each followed by a flush; the first may fail


@pytest.fixture
def restartable_broker() -> Iterator[list[KafkaService]]:
    """A broker this test may stop and start again on its port (the list holds the current)."""
    brokers = [start_kafka()]
    yield brokers
    brokers[-1].stop()


def restart(brokers: list[KafkaService], topics: list[str]) -> None:
    bootstrap = brokers[-1].bootstrap_servers
    brokers[-1].stop()
    brokers.append(start_kafka(port=int(bootstrap.rsplit(":", 1)[1])))
    ensure_topics(bootstrap, topics)


def send_until_acknowledged(producer: JsonProducer, topic: str, value: dict) -> list[str]:
    """Send `value` and flush, up to TRIES times; the errors of the failed tries."""
    errors: list[str] = []
    for _ in range(TRIES):
        producer.send(topic, value, key="k")
        try:
            producer.flush(timeout=10)
        except ServiceError as exc:
            errors.append(str(exc))
        else:
            return errors
    pytest.fail(f"no send was acknowledged in {TRIES} tries after the restart: {errors}")


def test_a_producer_whose_id_the_restarted_broker_forgot_is_replaced_and_sends_again(
    restartable_broker, caplog
) -> None:
    bootstrap = restartable_broker[0].bootstrap_servers
    ensure_topics(bootstrap, ["alerts"])
    registry = CollectorRegistry()
    producer = JsonProducer(bootstrap, name="alerts", metrics=ProducerMetrics(registry))
    producer.send("alerts", {"n": 0}, key="k")
    producer.flush()

    restart(restartable_broker, ["alerts"])
    caplog.set_level(logging.WARNING, logger="threefold.streaming.producer")
    try:
        failed = send_until_acknowledged(producer, "alerts", {"n": 1})
        producer.send("alerts", {"n": 2}, key="k")
        producer.flush()
    finally:
        producer.close()

    # tansu lost the first record with the restart; every record sent after it is there once
    records = read_topic_records(bootstrap, "alerts")
    assert sorted(json.loads(r.value)["n"] for r in records) == [1, 2]
    assert failed and producer.replacements == 1
    ours = [r for r in caplog.records if r.name == "threefold.streaming.producer"]
    (event,) = [r.fields for r in ours if getattr(r, "fields", {}).get("event")]
    assert event["event"] == "kafka_producer_replaced" and event["producer"] == "alerts"
    labels = {"producer": "alerts"}
    assert registry.get_sample_value("threefold_stream_producer_replaced_total", labels) == 1
    assert registry.get_sample_value("threefold_stream_producer_failing", labels) == 0


def test_a_producer_that_cannot_deliver_says_so_until_a_send_is_acknowledged(
    restartable_broker,
) -> None:
    """While sends fail the failing gauge is 1 (the alert publisher's outbox grows meanwhile),
    and back to 0 with the first acknowledgement."""
    bootstrap = restartable_broker[0].bootstrap_servers
    ensure_topics(bootstrap, ["t"])
    registry = CollectorRegistry()
    producer = JsonProducer(bootstrap, name="p", metrics=ProducerMetrics(registry))
    failing = lambda: registry.get_sample_value(  # noqa: E731
        "threefold_stream_producer_failing", {"producer": "p"}
    )
    producer.send("t", {"n": 0})
    producer.flush()
    assert failing() == 0

    restart(restartable_broker, ["t"])
    try:
        producer.send("t", {"n": 1})
        with pytest.raises(ServiceError, match="not written to Kafka"):
            producer.flush(timeout=10)
        assert failing() == 1
        send_until_acknowledged(producer, "t", {"n": 2})
        assert failing() == 0
    finally:
        producer.close()
