"""A consumer whose alerts do not reach Kafka shows it: its heartbeat carries the publisher's
delivery state (how many alerts wait, since when its sends fail, the last error) and its
assigned partition count, and the dashboard's /healthz answers 503 naming it once the failing
has lasted longer than PUBLISH_FAILING_LIMIT_S, not at the first failed send; 200 again once
its alerts go out. Heartbeats written by older consumers, without these fields, still read."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka import TopicPartition
from support.alerts_setup import heartbeat

from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor
from threefold.apps.alerts.web.consumer_health import PUBLISH_FAILING_LIMIT_S, assess_consumers
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.runner import RunnerStatus
from threefold.streaming.services import KafkaService, free_port, start_kafka

pytestmark = pytest.mark.integration
TOPIC = "alerts"
TRIES = 5  # publishing calls once the broker is (back) up
ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}


class OffsetClock:
    """The wall clock, `behind_s` seconds back: dates the start of a failing streak."""

    def __init__(self) -> None:
        self.behind_s = 0.0

    def __call__(self) -> float:
        return time.time() - self.behind_s


@pytest.fixture
def port() -> int:
    """Where the broker is expected; none listens there until a test starts one."""
    return free_port()


@pytest.fixture
def brokers() -> Iterator[list[KafkaService]]:
    started: list[KafkaService] = []
    yield started
    for broker in started:
        broker.stop()


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def processor(config, redis_store, port, clock) -> Iterator[AlertsProcessor]:
    """A consumer's processor whose publisher sends to `port`, within 1 s a call."""
    producer = JsonProducer(f"127.0.0.1:{port}", name="alerts")
    publisher = AlertPublisher(redis_store, producer, TOPIC, budget_s=1.0, clock=clock)
    pipeline = AlertPipeline.from_config(config, redis_store)
    processor = AlertsProcessor(config, object(), pipeline, publisher)  # type: ignore[arg-type]
    yield processor
    publisher.close(timeout_s=1.0)


def beat_now(processor: AlertsProcessor) -> dict:
    """Have `processor` write its heartbeat (running, polled just now); read it back."""
    processor.on_status(RunnerStatus("running", "alerts", last_poll_at=time.time()))
    return processor.pipeline.store.heartbeats()[processor.consumer_id]


def deliver(processor: AlertsProcessor) -> list[dict]:
    published: list[dict] = []
    for _ in range(TRIES):
        published += processor.publisher.publish_pending()
        if published:
            break
    return published


def start_broker(port: int, brokers: list[KafkaService]) -> None:
    brokers.append(start_kafka(port=port))
    ensure_topics(brokers[-1].bootstrap_servers, [TOPIC])


def test_failing_publishing_shows_in_the_heartbeat_and_503s_only_after_the_limit(
    client, processor, port, brokers, clock
) -> None:
    store = processor.pipeline.store
    processor.on_partitions_assigned([TopicPartition("news", 0), TopicPartition("news", 1)])
    store.claim_alert(dict(ALERT), cooldown_s=0)

    # No broker: the send fails. The heartbeat says so; /healthz is not alarmed by one failure.
    assert processor.publisher.publish_pending() == []
    beat = beat_now(processor)
    assert beat["alerts_undelivered"] == 1 and beat["partitions_assigned"] == 2
    assert beat["publish_failing_since"] is not None and beat["publish_error"]
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_json()
    (listed,) = health.get_json()["consumers"]
    assert listed["alerts_undelivered"] == 1 and listed["partitions_assigned"] == 2
    assert listed["publish_failing_s"] < PUBLISH_FAILING_LIMIT_S
    # A streak is dated from its first failure, not the latest.
    assert processor.publisher.publish_pending() == []
    assert beat_now(processor)["publish_failing_since"] == beat["publish_failing_since"]

    start_broker(port, brokers)
    assert [a["alert_id"] for a in deliver(processor)] == ["a-1"]
    beat = beat_now(processor)
    assert (beat["alerts_undelivered"], beat["publish_failing_since"]) == (0, None)

    # A streak that began longer ago than the limit: 503, naming the consumer and what waits.
    brokers.pop().stop()
    store.claim_alert({**ALERT, "alert_id": "a-2"}, cooldown_s=0)
    clock.behind_s = PUBLISH_FAILING_LIMIT_S + 30
    assert processor.publisher.publish_pending() == []
    beat_now(processor)
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert (body["status"], body["alerts_consumer"]) == ("degraded", "publish_failing")
    assert f"alerts consumer {processor.consumer_id} has not delivered alerts" in body["reason"]
    assert "1 alert(s) wait in the Redis outbox (not lost)" in body["reason"]
    assert "threefold_stream_producer_failing" in body["reason"]

    start_broker(port, brokers)
    assert [a["alert_id"] for a in deliver(processor)] == ["a-2"]
    beat_now(processor)
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_json()
    (listed,) = health.get_json()["consumers"]
    assert (listed["alerts_undelivered"], listed["publish_failing_s"]) == (0, None)


def failing_for(seconds: float, now: float, **fields) -> dict:
    return heartbeat(publish_failing_since=now - seconds, alerts_undelivered=3, **fields)


def test_the_limit_is_on_how_long_publishing_has_failed() -> None:
    now = time.time()
    key = "threefold:alerts:consumers"
    young = assess_consumers({"a:1:0": failing_for(PUBLISH_FAILING_LIMIT_S - 1, now)}, now, key)
    old = assess_consumers({"a:1:0": failing_for(PUBLISH_FAILING_LIMIT_S + 1, now)}, now, key)
    assert (young.ok, young.state) == (True, "running")
    assert (old.ok, old.state) == (False, "publish_failing")
    assert f"for {PUBLISH_FAILING_LIMIT_S + 1:.0f} s" in old.reason
    tighter = assess_consumers(
        {"a:1:0": failing_for(20, now)}, now, key, publish_failing_limit_s=10
    )
    assert tighter.state == "publish_failing"


def test_another_running_consumer_does_not_hide_one_that_cannot_publish(client, redis_store):
    redis_store.write_heartbeat("a:1:0", heartbeat(written_ago_s=1, polled_ago_s=1))
    redis_store.write_heartbeat(
        "b:2:0",
        failing_for(PUBLISH_FAILING_LIMIT_S + 30, time.time(), publish_error="KafkaTimeoutError()"),
    )
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["alerts_consumer"] == "publish_failing"
    assert "alerts consumer b:2:0" in body["reason"] and "KafkaTimeoutError()" in body["reason"]
    states = {each["consumer"]: each["state"] for each in body["consumers"]}
    assert states == {"a:1:0": "running", "b:2:0": "publish_failing"}


def test_a_heartbeat_from_an_older_consumer_still_reads(client, redis_store) -> None:
    """Written before the publishing and partition fields (a rolling upgrade)."""
    redis_store.write_heartbeat("old:1:0", heartbeat(written_ago_s=1, polled_ago_s=1))
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_json()
    (listed,) = health.get_json()["consumers"]
    assert (listed["consumer"], listed["state"]) == ("old:1:0", "running")
    missing = ("partitions_assigned", "alerts_undelivered", "publish_failing_s")
    assert [listed[name] for name in missing] == [None, None, None]
