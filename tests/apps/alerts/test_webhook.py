"""Webhook delivery against a real local HTTP server, and publishing with the broker down."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from threefold.apps.alerts.processor import AlertPublisher
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.webhook import WebhookNotifier
from threefold.streaming.producer import JsonProducer

ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}


@pytest.fixture
def receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_alert_is_posted_as_json(receiver):
    url, received = receiver
    notifier = WebhookNotifier(url)
    notifier.notify(ALERT)
    notifier.close()
    assert received == [ALERT]


def test_failed_delivery_is_reported_not_raised():
    failures = []
    notifier = WebhookNotifier(
        "http://127.0.0.1:9/nothing-listens",
        timeout_s=0.5,
        attempts=2,
        backoff_s=0.01,
        on_failure=lambda alert, error: failures.append((alert["alert_id"], error)),
    )
    notifier.notify(ALERT)
    notifier.close()
    assert failures and failures[0][0] == "a-1"


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
