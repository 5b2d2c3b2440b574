"""TopicProbe with its broker stopped or frozen: every call gives up within the probe's timeout
with a ServiceError (the alerts publisher then keeps its alerts for the next try), instead of
holding its caller, the consumer thread, for as long as kafka-python waits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from threefold.core.errors import ServiceError
from threefold.streaming import topic_probe
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.services import KafkaService, start_kafka
from threefold.streaming.topic_probe import TopicProbe

pytestmark = pytest.mark.integration
TIMEOUT_S = 1.0
NO_ANSWER = rf"did not answer within {TIMEOUT_S:g} s"


@pytest.fixture
def own_broker() -> Iterator[KafkaService]:
    """A broker this test may stop or freeze (and thaw)."""
    broker = start_kafka()
    yield broker
    broker.stop()


def probe(broker: KafkaService) -> TopicProbe:
    """A probe of a topic the broker does not have: every call asks the broker for it."""
    return TopicProbe(broker.bootstrap_servers, "not-there-yet", timeout_s=TIMEOUT_S)


def test_a_probe_first_used_after_its_broker_stopped_gives_up_within_its_timeout(own_broker):
    fresh = probe(own_broker)
    own_broker.stop()
    with pytest.raises(ServiceError, match=NO_ANSWER):  # not kafka-python's 30 s bootstrap
        fresh.end_offsets()
    fresh.close()


def test_a_probe_whose_broker_went_away_gives_up_within_its_timeout_every_time(own_broker):
    """kafka-python waits for the broker's reconnect backoff, which grows with every try
    (0.7, 3.5, 7 and 28 s for four calls), before it gives up on a fetch of metadata."""
    used = probe(own_broker)
    assert used.end_offsets() == {}
    own_broker.stop()
    time.sleep(3)
    started = time.monotonic()
    errors = []
    for _ in range(4):
        try:
            used.end_offsets()
        except Exception as exc:
            errors.append(exc)
    assert time.monotonic() - started < 4 * TIMEOUT_S + 10  # kafka-python alone: ~40 s
    assert len(errors) == 4 and all(isinstance(e, ServiceError) for e in errors), errors
    used.close()


def test_a_probe_on_a_frozen_broker_gives_up_within_its_timeout_then_recovers(own_broker):
    used, fresh = probe(own_broker), probe(own_broker)
    assert used.end_offsets() == {}
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        with pytest.raises(ServiceError, match=NO_ANSWER):
            used.end_offsets()
        with pytest.raises(ServiceError, match=NO_ANSWER):
            fresh.end_offsets()
        with pytest.raises(ServiceError, match=NO_ANSWER):
            used.ids_since({}, {"a-1"}, id_field="alert_id")
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
    assert used.end_offsets() == {} and fresh.end_offsets() == {}  # the broker is back
    used.close()
    fresh.close()


def test_a_read_back_gives_up_within_the_timeout_of_the_whole_call(own_broker, monkeypatch):
    """The broker is slow to take the probe's connection (most of the timeout), then freezes
    as the probe starts reading the topic back: `ids_since` gives up once its one timeout is
    over, not after a fresh timeout for each step (end offsets, then the read)."""
    bootstrap = own_broker.bootstrap_servers
    ensure_topics(bootstrap, ["alerts"])
    with JsonProducer(bootstrap) as producer:
        producer.send("alerts", {"alert_id": "a-0"})
        producer.flush()
    timeout_s = 2.0
    connect = topic_probe.new_consumer

    def slow_connect_then_freeze_on_read(config):
        time.sleep(0.9 * timeout_s)
        consumer = connect(config)
        poll = consumer.poll

        def freezing_poll(*args, **kwargs):
            os.kill(own_broker.pid, signal.SIGSTOP)
            return poll(*args, **kwargs)

        consumer.poll = freezing_poll
        return consumer

    monkeypatch.setattr(topic_probe, "new_consumer", slow_connect_then_freeze_on_read)
    slow = TopicProbe(bootstrap, "alerts", timeout_s=timeout_s)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceError, match=r"is (it|the broker) up\?"):
            slow.ids_since({0: 0}, {"a-1"}, id_field="alert_id")
        took = time.monotonic() - started
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
    assert took < 1.5 * timeout_s  # one step after another, each with its own timeout: ~1.9x
    slow.close()
