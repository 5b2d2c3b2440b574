"""Webhook delivery: best effort (`WebhookSender`, against a real local HTTP server; failures
are reported, never raised) and at least once from an outbox (`OutboxSender`)."""

from __future__ import annotations

from threefold.core.webhook import (
    IDEMPOTENCY_HEADER,
    InMemoryOutbox,
    OutboxSender,
    WebhookSender,
    retry_delay,
)

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


# -- OutboxSender: at-least-once delivery from an outbox (the HTTP answers are doubles here; the
# alerts tests run it against a real receiver and Redis) ----------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answering(monkeypatch, answers: list[str | None]) -> list[tuple[str, dict]]:
    """Replace the POST with one answering `answers` in turn; returns (key, payload) per call."""
    calls: list[tuple[str, dict]] = []

    def post_json(url, payload, *, timeout_s, user_agent, headers=None):
        calls.append((headers[IDEMPOTENCY_HEADER], payload))
        return answers.pop(0)

    monkeypatch.setattr("threefold.core.webhook.post_json", post_json)
    return calls


def test_retry_delay_doubles_up_to_the_cap():
    assert [retry_delay(n, 1.0, 5.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(3, 0.5) == 2.0


def test_an_outbox_delivery_is_retried_with_backoff_and_removed_only_after_a_2xx(monkeypatch):
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    outbox.put("a-1", ALERT)
    calls = answering(monkeypatch, ["HTTP 503 Service Unavailable", "timed out", None])
    attempts = []
    sender = OutboxSender(
        "http://hooks.example/a",
        outbox,
        id_field="alert_id",
        backoff_s=1.0,
        max_backoff_s=1.5,
        on_attempt=lambda payload, error, attempt: attempts.append((attempt, error)),
    )
    assert sender.run_once() == 1 and outbox.pending() == 1  # failed: kept, due in 1 s
    assert sender.run_once() == 0  # not due yet
    clock.now = 1.0
    assert sender.run_once() == 1 and outbox.pending() == 1  # failed again: due in 1.5 s (cap)
    clock.now = 2.4
    assert sender.run_once() == 0
    clock.now = 2.5
    assert sender.run_once() == 1 and outbox.pending() == 0  # 2xx: removed
    assert calls == [("a-1", ALERT)] * 3  # the key travels as Idempotency-Key on every try
    assert attempts == [(1, "HTTP 503 Service Unavailable"), (2, "timed out"), (3, None)]


def test_a_pass_stops_at_the_first_failure_and_later_deliveries_wait(monkeypatch):
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    for key in ("a-1", "a-2", "a-3"):
        outbox.put(key, {**ALERT, "alert_id": key})
    calls = answering(monkeypatch, [None, "refused", None, None])
    sender = OutboxSender("http://hooks.example/a", outbox, backoff_s=1.0)
    assert sender.run_once() == 2  # a-1 delivered, a-2 failed: a-3 waits for the next pass
    assert sender.run_once() == 1  # a-3 (a-2 is not due yet)
    clock.now = 1.0
    assert sender.run_once() == 1 and outbox.pending() == 0
    assert [key for key, _ in calls] == ["a-1", "a-2", "a-3", "a-2"]


def test_a_claim_hides_a_delivery_from_other_senders_until_its_lease_ends():
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    outbox.put("a-1", ALERT)
    (entry,) = outbox.claim("first", 10, lease_s=30)
    assert (entry.key, entry.attempt) == ("a-1", 1)
    assert outbox.claim("second", 10, lease_s=30) == []
    outbox.retry_later("a-1", "second", 0)  # not second's claim: nothing changes
    assert outbox.claim("second", 10, lease_s=30) == []
    clock.now = 30  # the holder died: its lease ends
    assert [(e.key, e.attempt) for e in outbox.claim("second", 10, lease_s=30)] == [("a-1", 2)]


def test_a_full_in_memory_outbox_drops_the_oldest():
    outbox = InMemoryOutbox(limit=2)
    assert outbox.put("a-1", ALERT) == [] and outbox.put("a-2", ALERT) == []
    assert outbox.put("a-1", ALERT) == []  # already queued: kept once
    assert outbox.put("a-3", ALERT) == ["a-1"]
    assert [e.key for e in outbox.claim("me", 10, lease_s=30)] == ["a-2", "a-3"]
