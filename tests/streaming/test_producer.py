"""JsonProducer against the real broker."""

from __future__ import annotations

import json

import pytest

from threefold.core.errors import ConfigError, DataError, ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.services import free_port

pytestmark = pytest.mark.integration


def test_sends_json_with_key_and_timestamp(kafka_bootstrap, unique_name, read_topic) -> None:
    topic = unique_name("produced")
    ensure_topics(kafka_bootstrap, [topic])  # not left to the broker's auto-creation
    with JsonProducer(kafka_bootstrap) as producer:
        producer.send(topic, {"text": "zoë", "n": 1}, key="k1", timestamp_ms=1_700_000_000_000)
        producer.send(topic, {"text": "two"})
        producer.flush()
    records = read_topic(topic, min_count=2)
    assert [json.loads(r.value) for r in records] == [{"text": "zoë", "n": 1}, {"text": "two"}]
    assert records[0].key == b"k1" and records[0].timestamp == 1_700_000_000_000
    assert records[1].key is None


def test_a_value_that_is_not_json_is_refused_before_sending(kafka_bootstrap, unique_name) -> None:
    with (
        JsonProducer(kafka_bootstrap) as producer,
        pytest.raises(DataError, match="not JSON-serializable"),
    ):
        producer.send(unique_name("t"), {"when": object()})


def test_no_broker_is_a_service_error_that_says_what_to_fix() -> None:
    producer = JsonProducer(f"127.0.0.1:{free_port()}", bootstrap_timeout_ms=500)
    with pytest.raises(ServiceError, match=r"cannot connect a Kafka producer.*KAFKA_BOOTSTRAP"):
        producer.send("t", {"a": 1})


def test_unknown_producer_settings_are_a_config_error(kafka_bootstrap) -> None:
    with pytest.raises(ConfigError, match=r"invalid Kafka producer settings.*lingerms"):
        JsonProducer(kafka_bootstrap, lingerms=5).send("t", {"a": 1})
