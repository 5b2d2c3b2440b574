"""Webhook delivery against a real local HTTP server; failures are reported, never raised."""

from __future__ import annotations

from threefold.core.webhook import WebhookSender

ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}


def test_alert_is_posted_as_json(webhook_server):
    url, received = webhook_server
    notifier = WebhookSender(url)
    notifier.send(ALERT)
    notifier.close()
    assert [received.get_nowait() for _ in range(received.qsize())] == [ALERT]


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


def test_a_failing_webhook_is_retried_until_it_answers(monkeypatch):
    answers = iter([OSError("refused"), OSError("refused"), None] + [OSError("refused")] * 3)
    calls = []

    class Answer:
        status = 204

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout):
        calls.append((request.full_url, timeout))
        error = next(answers)
        if error is not None:
            raise error
        return Answer()

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    results = []
    sender = WebhookSender(
        "http://hooks.example/a",
        timeout_s=2.0,
        attempts=3,
        backoff_s=0.001,
        on_result=lambda payload, error: results.append(error),
    )
    assert sender.deliver(ALERT) is None
    assert calls == [("http://hooks.example/a", 2.0)] * 3
    sender.send(ALERT)  # three refusals: reported once, after the last try
    sender.close()
    assert results == ["OSError: refused"] and len(calls) == 6
