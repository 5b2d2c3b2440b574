"""Publishing alerts from the outbox with the broker down, then up."""

from __future__ import annotations

import json

import pytest

from threefold.apps.alerts.processor import AlertPublisher
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.topic_probe import TopicProbe

ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}


@pytest.mark.integration
def test_alerts_stay_in_the_outbox_while_the_broker_is_down_then_go_out(
    kafka_bootstrap, unique_name, read_topic
):
    store = InMemoryStateStore()
    store.claim_alert(dict(ALERT), cooldown_s=0)
    # Nothing listens on port 9; a fixed api_version skips the (slow) version probe.
    down = JsonProducer("127.0.0.1:9", max_block_ms=500, retries=0, api_version=(2, 5))
    topic = unique_name("alerts")
    assert AlertPublisher(store, down, topic).publish_pending() == []
    assert [a["alert_id"] for a in store.pending_alerts()] == ["a-1"]
    unreachable = TopicProbe("127.0.0.1:9", topic, timeout_s=2)
    assert AlertPublisher(store, down, topic, probe=unreachable).publish_pending() == []
    assert [a["alert_id"] for a in store.pending_alerts()] == ["a-1"]

    up = JsonProducer(kafka_bootstrap)
    probe = TopicProbe(kafka_bootstrap, topic)
    published = AlertPublisher(store, up, topic, probe=probe).publish_pending()
    probe.close()
    up.close()
    assert [a["alert_id"] for a in published] == ["a-1"]
    assert store.pending_alerts() == []
    assert [json.loads(r.value)["alert_id"] for r in read_topic(topic, min_count=1)] == ["a-1"]


class DiesAfterTheBrokerAnswers(InMemoryStateStore):
    """The publisher's process dies between the broker's acknowledgement and the outbox ack."""

    dying = True

    def ack_alerts(self, alerts, *, webhook: bool = False) -> list[str]:
        if self.dying:
            raise SystemExit("killed after the broker acknowledged the alert")
        return super().ack_alerts(alerts, webhook=webhook)


@pytest.mark.integration
def test_an_alert_the_broker_took_before_its_publisher_died_is_not_sent_again(
    kafka_bootstrap, unique_name, read_topic
):
    topic = unique_name("alerts")
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    store = DiesAfterTheBrokerAnswers()
    store.claim_alert(dict(ALERT), cooldown_s=0)
    store.claim_alert({**ALERT, "alert_id": "a-2", "key": "entity:APXR"}, cooldown_s=0)
    dead = AlertPublisher(
        store, JsonProducer(kafka_bootstrap), topic, probe=TopicProbe(kafka_bootstrap, topic)
    )
    with pytest.raises(SystemExit):
        dead.publish_pending()
    assert len(read_topic(topic, min_count=2)) == 2  # both landed, neither was acknowledged
    store.lease_pending_alerts(dead.owner, lease_s=0)  # its leases run out
    store.dying = False  # the next process lives

    producer = JsonProducer(kafka_bootstrap)
    store.claim_alert({**ALERT, "alert_id": "a-3", "key": "entity:NWBK"}, cooldown_s=0)
    nxt = AlertPublisher(store, producer, topic, probe=TopicProbe(kafka_bootstrap, topic))
    published = nxt.publish_pending()
    nxt.close()
    assert sorted(a["alert_id"] for a in published) == ["a-1", "a-2", "a-3"]
    assert store.pending_alerts() == [] and len(store.recent_alerts()) == 3
    records = read_topic(topic)  # all of it: a resend would show as a fourth record
    assert sorted(json.loads(r.value)["alert_id"] for r in records) == ["a-1", "a-2", "a-3"]


@pytest.mark.integration
def test_an_alert_noted_as_sending_but_missing_from_the_topic_is_sent(
    kafka_bootstrap, unique_name, read_topic
):
    topic = unique_name("alerts")
    ensure_topics(kafka_bootstrap, [topic])
    store = InMemoryStateStore()
    store.claim_alert(dict(ALERT), cooldown_s=0)
    probe = TopicProbe(kafka_bootstrap, topic)
    store.mark_sending(store.pending_alerts(), probe.end_offsets())  # died before the send
    publisher = AlertPublisher(store, JsonProducer(kafka_bootstrap), topic, probe=probe)
    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]
    publisher.close()
    assert [json.loads(r.value)["alert_id"] for r in read_topic(topic)] == ["a-1"]


class SlowFuture:
    """A send the broker answers later (kafka-python's future: is_done, failed())."""

    def __init__(self) -> None:
        self.is_done = False
        self.error: Exception | None = None

    def failed(self) -> bool:
        return self.error is not None


class SlowProducer:
    """Unit double: flush times out while the sends are still in flight."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict, SlowFuture]] = []

    def send(self, topic: str, value: dict, key: str) -> SlowFuture:
        self.sent.append((value, SlowFuture()))
        return self.sent[-1][1]

    def flush(self, timeout: float) -> None:
        if not all(future.is_done for _, future in self.sent):
            raise TimeoutError(f"not acknowledged within {timeout} s")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_a_send_still_in_flight_after_a_flush_timeout_is_not_sent_again():
    store = InMemoryStateStore()
    store.claim_alert(dict(ALERT), cooldown_s=0)
    producer = SlowProducer()
    publisher = AlertPublisher(store, producer, "alerts")

    assert publisher.publish_pending() == []  # flush timed out: the send is still in flight
    assert publisher.publish_pending() == []
    assert len(producer.sent) == 1  # not resent while it may still land
    assert [a["alert_id"] for a in store.pending_alerts()] == ["a-1"]

    producer.sent[0][1].is_done = True  # the broker acknowledges it
    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]
    assert store.pending_alerts() == [] and len(producer.sent) == 1


def test_a_send_that_fails_is_released_and_sent_again():
    store = InMemoryStateStore()
    store.claim_alert(dict(ALERT), cooldown_s=0)
    producer = SlowProducer()
    publisher = AlertPublisher(store, producer, "alerts")
    assert publisher.publish_pending() == []
    producer.sent[0][1].is_done, producer.sent[0][1].error = True, RuntimeError("not leader")

    assert publisher.publish_pending() == []  # the failure is settled: released for a resend
    failures = publisher.metrics.registry.get_sample_value(
        "threefold_alerts_publish_failures_total"
    )
    assert failures == 1
    producer.sent.clear()
    assert publisher.publish_pending() == [] and len(producer.sent) == 1  # sent again
    producer.sent[0][1].is_done = True
    assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]


def test_closing_acknowledges_what_landed_and_frees_what_did_not():
    store = InMemoryStateStore()
    for alert_id in ("a-1", "a-2"):
        store.claim_alert({**ALERT, "alert_id": alert_id, "key": alert_id}, cooldown_s=0)
    producer = SlowProducer()
    publisher = AlertPublisher(store, producer, "alerts")
    assert publisher.publish_pending() == []  # both in flight
    landed = next(future for alert, future in producer.sent if alert["alert_id"] == "a-1")
    landed.is_done = True

    publisher.close()
    assert producer.closed
    assert [a["alert_id"] for a in store.pending_alerts()] == ["a-2"]  # a-1 acknowledged
    other = AlertPublisher(store, SlowProducer(), "alerts")
    other.publish_pending()
    assert [a["alert_id"] for a, _ in other.producer.sent] == ["a-2"]  # free at once, no wait
