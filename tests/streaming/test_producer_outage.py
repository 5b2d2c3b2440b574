"""JsonProducer with its broker frozen (SIGSTOP: connections are accepted, nothing is answered):
a send waits `max_block_ms` at most, connecting included, a flush inside a `time_budget` ends
with the budget, and a close ends within its timeout, dropping (and counting) what the broker
has not acknowledged, instead of raising and leaving the producer open."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_calls import time_budget
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.services import KafkaService, start_kafka

pytestmark = pytest.mark.integration
LIMIT_S = 1.0
SLACK_S = 4.0  # thread start-up and a busy machine; kafka-python alone waits 30 s


@pytest.fixture
def frozen_broker() -> Iterator[KafkaService]:
    """A broker with the topic "t" (3 partitions) that the test freezes (SIGSTOP) when ready."""
    broker = start_kafka()
    ensure_topics(broker.bootstrap_servers, ["t"], partitions=3)
    yield broker
    os.kill(broker.pid, signal.SIGCONT)
    broker.stop()


def connected(broker: KafkaService, client_id: str = "connected") -> JsonProducer:
    """A producer that has written to "t" (connected, the topic's metadata known)."""
    producer = JsonProducer(broker.bootstrap_servers, client_id=client_id)
    producer.send("t", {"n": 0})
    producer.flush()
    return producer


def test_a_send_that_must_connect_to_a_frozen_broker_waits_max_block_ms_at_most(frozen_broker):
    producer = JsonProducer(frozen_broker.bootstrap_servers, max_block_ms=int(LIMIT_S * 1000))
    os.kill(frozen_broker.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"cannot connect a Kafka producer.*KAFKA_BOOTSTRAP"):
        producer.send("t", {"n": 1})
    assert time.monotonic() - started < LIMIT_S + SLACK_S
    producer.close()


def test_a_flush_inside_a_time_budget_ends_with_the_budget(frozen_broker):
    producer = connected(frozen_broker)
    os.kill(frozen_broker.pid, signal.SIGSTOP)
    for n in range(6):  # batches for each partition
        producer.send("t", {"n": n}, key=str(n))
    started = time.monotonic()
    with (
        time_budget(LIMIT_S),
        pytest.raises(ServiceError, match=r"did not acknowledge 6 queued message\(s\) within 1 s"),
    ):
        producer.flush(timeout=60)
    assert time.monotonic() - started < LIMIT_S + SLACK_S
    assert producer.unanswered == 6  # still in flight: a flush after the broker is back
    os.kill(frozen_broker.pid, signal.SIGCONT)
    producer.flush()
    assert producer.unanswered == 0
    producer.close()


def test_closing_on_a_frozen_broker_ends_in_time_and_counts_what_it_drops(frozen_broker, caplog):
    producer = connected(frozen_broker, client_id="closing")
    os.kill(frozen_broker.pid, signal.SIGSTOP)
    for n in range(3):
        producer.send("t", {"n": n}, key=str(n))
    caplog.set_level(logging.WARNING, logger="threefold.streaming.producer")
    started = time.monotonic()
    producer.close(timeout=LIMIT_S)  # kafka-python alone raises KafkaTimeoutError, still open
    assert time.monotonic() - started < LIMIT_S + SLACK_S
    assert "dropping the 3 message(s) not acknowledged" in caplog.text
    assert producer.unanswered == 0  # each one's future failed: none waits for an answer
    assert "closing-network-thread" not in [t.name for t in threading.enumerate()]
