"""Webhook delivery against a real local HTTP server; failures are reported, never raised."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from threefold.core.webhook import WebhookSender

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
    notifier = WebhookSender(url)
    notifier.send(ALERT)
    notifier.close()
    assert received == [ALERT]


def test_failed_delivery_is_reported_not_raised():
    failures = []
    notifier = WebhookSender(
        "http://127.0.0.1:9/nothing-listens",
        timeout_s=0.5,
        attempts=2,
        backoff_s=0.01,
        on_result=lambda alert, error: failures.append((alert["alert_id"], error)),
    )
    notifier.send(ALERT)
    notifier.close()
    assert failures and failures[0][0] == "a-1"
