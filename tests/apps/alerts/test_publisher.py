"""Publishing alerts from the outbox with the broker down, then up."""

from __future__ import annotations

import json

import pytest

from threefold.apps.alerts.processor import AlertPublisher
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.streaming.producer import JsonProducer

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

    up = JsonProducer(kafka_bootstrap)
    published = AlertPublisher(store, up, topic).publish_pending()
    up.close()
    assert [a["alert_id"] for a in published] == ["a-1"]
    assert store.pending_alerts() == []
    assert [json.loads(r.value)["alert_id"] for r in read_topic(topic, min_count=1)] == ["a-1"]
