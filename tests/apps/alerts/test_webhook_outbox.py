"""Alert webhooks at least once: the Redis outbox, a real local receiver, restarts, replicas."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.backoff import NoBackoff
from redis.retry import Retry
from support.servers import free_port
from support.slow_network import FakeDNS

from threefold.apps.alerts.cli import alerts as alerts_cli
from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.metrics import AlertsMetrics
from threefold.apps.alerts.processor import AlertPublisher
from threefold.apps.alerts.resources import open_state_store
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.state.redis_webhooks import RedisWebhookOutbox, webhook_keys
from threefold.core.webhook import OutboxSender
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer

pytestmark = pytest.mark.integration


def alert(n: int) -> dict:
    return {"alert_id": f"a-{n}", "key": f"entity:K{n}", "window_end_ts": 300 * n, "summary": "s"}


def sender(store, url: str, metrics: AlertsMetrics | None = None, **kwargs) -> OutboxSender:
    """An OutboxSender on the store's webhook outbox, retrying fast (as the consumer wires it)."""
    metrics = metrics or AlertsMetrics()
    options = {"timeout_s": 2.0, "backoff_s": 0.05, "max_backoff_s": 0.2, "poll_s": 0.05}
    return OutboxSender(
        url,
        store.webhook_outbox(),
        name="alerts",
        id_field="alert_id",
        on_attempt=metrics.count_webhook_attempt,
        on_pending=metrics.set_webhook_pending,
        **{**options, **kwargs},
    )


def queue_alerts(store, alerts: list[dict]) -> list[str]:
    """Claim and acknowledge `alerts` with the webhook on (what a publisher does)."""
    for each in alerts:
        store.claim_alert(each, cooldown_s=0)
    return store.ack_alerts(alerts, webhook=True)


def open_store(redis_settings, prefix: str, **settings):
    return open_state_store(AlertsConfig(redis_prefix=prefix, **settings), redis_settings)


@pytest.fixture
def alerts_topic(kafka_bootstrap, unique_name) -> str:
    topic = unique_name("alerts")
    ensure_topics(kafka_bootstrap, [topic])
    return topic


def test_a_receiver_that_fails_at_first_gets_every_alert_exactly_once(redis_store, receiver):
    hook = receiver(fail_first=4)
    queue_alerts(redis_store, [alert(1), alert(2), alert(3)])
    metrics = AlertsMetrics()
    webhook = sender(redis_store, hook.url, metrics)
    webhook.start()
    try:
        hook.wait_for(delivered=3, failed=4)
        time.sleep(0.3)  # time for a duplicate to show up, if one were coming
    finally:
        webhook.close()
    assert sorted(hook.delivered()) == ["a-1", "a-2", "a-3"]
    assert all(key == body["alert_id"] for key, body, _ in hook.requests)  # Idempotency-Key
    assert redis_store.webhook_outbox().pending() == 0
    value = metrics.registry.get_sample_value
    assert value("threefold_alerts_webhook_delivered_total") == 3
    assert value("threefold_alerts_webhook_failures_total") == 4
    assert value("threefold_alerts_webhook_retries_total") == 4  # each failure tried again
    assert value("threefold_alerts_webhook_pending") == 0


def test_an_alert_whose_receiver_is_down_arrives_after_a_consumer_restart(
    redis_settings, redis_prefix, receiver, kafka_bootstrap, alerts_topic
):
    hook = receiver(fail_first=None)  # down (503) until it recovers
    before = open_store(redis_settings, redis_prefix)
    before.claim_alert(alert(1), cooldown_s=0)
    first = AlertPublisher(
        before,
        JsonProducer(kafka_bootstrap),
        alerts_topic,
        webhook=sender(before, hook.url),
    )
    assert [a["alert_id"] for a in first.publish_pending()] == ["a-1"]  # on the topic
    hook.wait_for(failed=2)
    first.close()  # the consumer stops (or is restarted) with the webhook undelivered
    assert hook.delivered() == [] and before.webhook_outbox().pending() == 1

    hook.recover()
    after = open_store(redis_settings, redis_prefix)  # a new process on the same Redis
    second = AlertPublisher(
        after, JsonProducer(kafka_bootstrap), alerts_topic, webhook=sender(after, hook.url)
    )
    assert second.publish_pending() == []  # no alert to publish: it resumes the outbox
    try:
        hook.wait_for(delivered=1)
    finally:
        second.close()
    assert hook.delivered() == ["a-1"] and after.webhook_outbox().pending() == 0


def test_two_consumers_on_one_redis_deliver_each_alert_once(redis_settings, redis_prefix, receiver):
    hook = receiver(delay_s=0.02)  # slow enough for the two senders to overlap
    one, two = open_store(redis_settings, redis_prefix), open_store(redis_settings, redis_prefix)
    alerts = [alert(n) for n in range(20)]
    queue_alerts(one, alerts)
    senders = [sender(one, hook.url), sender(two, hook.url)]
    for each in senders:
        each.start()
    try:
        hook.wait_for(delivered=20)
        time.sleep(0.3)
    finally:
        for each in senders:
            each.close()
    assert sorted(hook.delivered()) == sorted(a["alert_id"] for a in alerts)
    assert len(hook.requests) == 20  # no alert posted twice


def test_a_rejected_alert_leaves_the_outbox_for_the_rejected_record_and_says_so(
    redis_store, receiver, caplog
):
    hook = receiver(fail_first=1, fail_status=422, fail_body=b'{"error": "summary too long"}')
    queue_alerts(redis_store, [alert(1), alert(2)])
    metrics = AlertsMetrics()
    webhook = sender(redis_store, hook.url, metrics)
    with caplog.at_level(logging.ERROR, logger="threefold.core.webhook"):
        webhook.start()
        try:
            hook.wait_for(delivered=1, failed=1)
            time.sleep(0.3)  # time for a retry to show up, if one were coming
        finally:
            webhook.close()
    assert [status for _, _, status in hook.requests] == [422, 204]  # a-1 tried once
    outbox = redis_store.webhook_outbox()
    assert outbox.pending() == 0
    (rejected,) = outbox.rejected()
    assert (rejected.key, rejected.payload, rejected.status, rejected.answer) == (
        "a-1",
        alert(1),
        422,
        '{"error": "summary too long"}',
    )
    assert abs(rejected.at - time.time()) < 60
    value = metrics.registry.get_sample_value
    assert value("threefold_alerts_webhook_rejected_total", {"status": "422"}) == 1
    assert value("threefold_alerts_webhook_failures_total") == 0
    assert value("threefold_alerts_webhook_delivered_total") == 1
    assert value("threefold_alerts_webhook_pending") == 0
    (record,) = [r for r in caplog.records if getattr(r, "fields", {}).get("status") == 422]
    assert record.fields["event"] == "webhook_rejected" and record.fields["alert_id"] == "a-1"
    assert "rejected" in record.getMessage() and "summary too long" in record.getMessage()


@pytest.mark.parametrize("status", [302, 408, 429, 503])
def test_a_redirect_or_a_passing_refusal_is_retried_until_the_receiver_takes_the_alert(
    redis_store, receiver, status
):
    hook = receiver(fail_first=2, fail_status=status)
    queue_alerts(redis_store, [alert(1)])
    metrics = AlertsMetrics()
    webhook = sender(redis_store, hook.url, metrics)
    webhook.start()
    try:
        hook.wait_for(delivered=1, failed=2)
    finally:
        webhook.close()
    assert hook.delivered() == ["a-1"] and hook.gets == 0  # a redirect is not followed
    value = metrics.registry.get_sample_value
    assert value("threefold_alerts_webhook_failures_total") == 2
    assert value("threefold_alerts_webhook_rejected_total", {"status": str(status)}) is None


def test_an_unreachable_outbox_is_shown_until_it_answers_again(redis_store, redis_prefix):
    away = redis.Redis(port=free_port(), decode_responses=True, retry=Retry(NoBackoff(), 0))
    queue_alerts(redis_store, [alert(1)])
    metrics = AlertsMetrics()
    metrics.webhook_pending.set(7)  # as last read, before Redis went away
    webhook = sender(redis_store, "http://127.0.0.1:9/nobody", metrics)
    webhook.outbox = RedisWebhookOutbox(away, redis_prefix)
    value = metrics.registry.get_sample_value

    def wait_for_gauge(name: str, expected: float) -> None:
        deadline = time.monotonic() + 10
        while value(name) != expected:
            assert time.monotonic() < deadline, f"{name} stayed {value(name)}, not {expected}"
            time.sleep(0.02)

    webhook.start()
    try:
        wait_for_gauge("threefold_alerts_webhook_outbox_unreachable", 1)
        assert value("threefold_alerts_webhook_pending") == 7  # stale, and said to be
        webhook.outbox = redis_store.webhook_outbox()  # Redis is back
        wait_for_gauge("threefold_alerts_webhook_outbox_unreachable", 0)
        wait_for_gauge("threefold_alerts_webhook_pending", 1)  # a-1, its receiver down
    finally:
        webhook.close()


def test_a_full_webhook_outbox_drops_the_oldest_and_says_so(
    redis_settings, redis_prefix, receiver, kafka_bootstrap, alerts_topic, caplog
):
    hook = receiver(fail_first=None)
    store = open_store(redis_settings, redis_prefix, webhook_outbox_max=2)
    for n in (1, 2, 3):
        store.claim_alert(alert(n), cooldown_s=0)
    metrics = AlertsMetrics()
    publisher = AlertPublisher(
        store,
        JsonProducer(kafka_bootstrap),
        alerts_topic,
        webhook=sender(store, hook.url, metrics, backoff_s=30.0, max_backoff_s=30.0),
        metrics=metrics,
    )
    with caplog.at_level(logging.ERROR, logger="threefold.apps.alerts.processor"):
        assert len(publisher.publish_pending()) == 3
    publisher.close()
    assert metrics.registry.get_sample_value("threefold_alerts_webhook_dropped_total") == 1
    (record,) = [r for r in caplog.records if getattr(r, "fields", {}).get("alert_ids")]
    assert record.fields == {"event": "webhook_dropped", "alert_ids": ["a-1"]}
    assert "outbox is full" in record.getMessage() and "WEBHOOK_OUTBOX_MAX" in record.getMessage()
    assert store.webhook_outbox().pending() == 2  # a-2 and a-3 wait for the receiver
    assert "a-1" not in [body["alert_id"] for _, body, _ in hook.requests]


# -- the outbox contract, in Redis and in memory -------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def small_store(request, redis_settings, redis_prefix):
    """A state store whose webhook outbox holds at most 2 deliveries."""
    if request.param == "memory":
        return InMemoryStateStore(webhook_limit=2)
    return open_store(redis_settings, redis_prefix, webhook_outbox_max=2)


def test_an_acknowledged_alert_is_queued_once_and_the_oldest_makes_room(small_store):
    assert queue_alerts(small_store, [alert(1), alert(2)]) == []
    assert small_store.ack_alerts([alert(1)], webhook=True) == []  # acknowledged already
    assert queue_alerts(small_store, [alert(3)]) == ["a-1"]
    outbox = small_store.webhook_outbox()
    assert [(e.key, e.payload, e.attempt) for e in outbox.claim("me", 10, lease_s=30)] == [
        ("a-2", alert(2), 1),
        ("a-3", alert(3), 1),
    ]
    small_store.claim_alert(alert(4), cooldown_s=0)
    assert small_store.ack_alerts([alert(4)]) == []  # no webhook: nothing queued
    assert outbox.pending() == 2


def test_a_claimed_delivery_comes_back_when_its_lease_ends_or_its_holder_retries(small_store):
    queue_alerts(small_store, [alert(1)])
    outbox = small_store.webhook_outbox()
    assert [e.key for e in outbox.claim("dies", 10, lease_s=0.2)] == ["a-1"]
    assert outbox.claim("other", 10, lease_s=30) == []  # hidden while "dies" holds it
    time.sleep(0.3)
    (entry,) = outbox.claim("other", 10, lease_s=30)  # the holder died: the lease ended
    assert entry.attempt == 2
    outbox.retry_later("a-1", "dies", 0)  # no longer its claim: ignored
    assert outbox.claim("third", 10, lease_s=30) == []
    outbox.retry_later("a-1", "other", 0.1)
    time.sleep(0.2)
    assert [e.attempt for e in outbox.claim("third", 10, lease_s=30)] == [3]
    outbox.delivered("a-1")
    assert outbox.pending() == 0 and outbox.claim("third", 10, lease_s=0) == []


def test_a_rejected_delivery_leaves_the_outbox_for_a_bounded_record(small_store):
    queue_alerts(small_store, [alert(1), alert(2)])
    outbox = small_store.webhook_outbox()
    outbox.claim("me", 10, lease_s=30)
    outbox.reject("a-1", 400, "bad json")
    outbox.reject("a-1", 400, "bad json")  # gone already: recorded once
    outbox.reject("a-9", 404, "")  # never queued: nothing recorded
    assert outbox.pending() == 1 and [e.key for e in outbox.claim("other", 10, 30)] == []
    assert [(r.key, r.payload, r.status, r.answer) for r in outbox.rejected()] == [
        ("a-1", alert(1), 400, "bad json")
    ]
    outbox.reject("a-2", 410, "gone")
    assert [r.key for r in outbox.rejected()] == ["a-2", "a-1"]  # newest first
    assert [r.key for r in outbox.rejected(limit=1)] == ["a-2"]
    assert outbox.pending() == 0


def test_a_rejected_delivery_is_resent_due_now_once_and_leaves_the_record(small_store):
    queue_alerts(small_store, [alert(1), alert(2)])
    outbox = small_store.webhook_outbox()
    outbox.claim("me", 10, lease_s=30)
    outbox.reject("a-1", 401, "bad token")
    outbox.reject("a-2", 404, "")
    done = outbox.requeue_rejected(["a-1", "a-9", "a-1"])
    assert (done.requeued, done.not_found) == (["a-1"], ["a-9"])
    assert [r.key for r in outbox.rejected()] == ["a-2"]
    assert [(e.key, e.payload, e.attempt) for e in outbox.claim("me", 10, 30)] == [
        ("a-1", alert(1), 1)  # due now, from its first attempt
    ]
    again = outbox.requeue_rejected(["a-1"])  # back in the outbox already
    assert (again.requeued, again.not_found) == ([], ["a-1"]) and outbox.pending() == 1
    assert outbox.requeue_rejected([]).requeued == []  # nothing asked for: not all
    assert outbox.requeue_rejected().requeued == ["a-2"]  # all
    assert outbox.rejected() == [] and outbox.pending() == 2


def test_a_resend_into_a_full_outbox_drops_nothing_and_the_next_alert_trims_it(small_store):
    """Whatever limit the re-sender believes in, no waiting delivery is lost by a re-send."""
    queue_alerts(small_store, [alert(1), alert(2)])
    outbox = small_store.webhook_outbox()
    outbox.reject("a-1", 401, "")
    assert queue_alerts(small_store, [alert(3)]) == []  # a-2, a-3: full
    assert outbox.requeue_rejected().requeued == ["a-1"]
    assert outbox.pending() == 3
    assert queue_alerts(small_store, [alert(4)]) == ["a-2", "a-3"]  # the resent a-1 is newer
    assert sorted(e.key for e in outbox.claim("me", 10, 30)) == ["a-1", "a-4"]


def put_back_by_hand(store, key: str, payload: dict) -> None:
    """Queue a delivery again as an operator did before `requeue_rejected` existed."""
    if isinstance(store, InMemoryStateStore):
        store.webhook_outbox().put(key, payload)
        return
    items, due, order, _, _ = webhook_keys(store.prefix)
    store.client.hset(items, key, json.dumps(payload, sort_keys=True))
    store.client.zadd(due, {key: 0})
    store.client.zadd(order, {key: store.client.incr(store.prefix + "webhooks-seq")})


def test_resending_a_delivery_already_back_in_the_outbox_does_not_queue_it_twice(small_store):
    queue_alerts(small_store, [alert(1)])
    outbox = small_store.webhook_outbox()
    for _ in range(2):  # rejected, put back by hand, rejected again, put back again
        outbox.claim("me", 10, lease_s=30)
        outbox.reject("a-1", 401, "")
        put_back_by_hand(small_store, "a-1", alert(1))
    assert [r.key for r in outbox.rejected()] == ["a-1", "a-1"]
    done = outbox.requeue_rejected(["a-1"])
    assert done.requeued == ["a-1"]
    assert outbox.rejected() == [] and outbox.pending() == 1
    assert [e.key for e in outbox.claim("me", 10, 30)] == ["a-1"]


def test_the_redis_record_of_rejections_keeps_the_newest(redis_store, redis_prefix):
    queue_alerts(redis_store, [alert(n) for n in range(4)])
    outbox = RedisWebhookOutbox(redis_store.client, redis_prefix, rejected_limit=2)
    for n in range(4):
        outbox.reject(f"a-{n}", 400, "")
    assert [r.key for r in outbox.rejected()] == ["a-3", "a-2"]


def test_the_consumer_wires_the_webhook_to_the_redis_outbox_and_its_metrics(
    redis_settings, redis_prefix, receiver, kafka_bootstrap, alerts_topic
):
    from support.alerts_setup import NeutralScorer

    from threefold.apps.alerts.consumer import build_runner

    hook = receiver(fail_first=1)
    config = AlertsConfig(
        redis_prefix=redis_prefix,
        bootstrap_servers=kafka_bootstrap,
        alerts_topic=alerts_topic,
        webhook_url=hook.url,
        webhook_backoff_s=0.05,
    )
    _, processor = build_runner(config, redis_settings, scorer=NeutralScorer())
    publisher = processor.publisher
    publisher.store.claim_alert(alert(1), cooldown_s=0)
    try:
        assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]
        hook.wait_for(delivered=1, failed=1)
    finally:
        publisher.close()
    assert hook.delivered() == ["a-1"]
    value = processor.metrics.registry.get_sample_value
    assert value("threefold_alerts_webhook_delivered_total") == 1
    assert value("threefold_alerts_webhook_failures_total") == 1
    assert value("threefold_alerts_webhook_retries_total") == 1


# -- re-sending rejected deliveries: `threefold alerts webhooks rejected | resend` ---------------


@pytest.fixture
def webhooks_run(redis_url, redis_prefix, monkeypatch):
    """`webhooks_run("resend", "a-1")` -> the click Result, on this test's Redis and prefix."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("THREEFOLD_ALERTS_REDIS_PREFIX", redis_prefix)

    def run(*args: str):
        return CliRunner().invoke(alerts_cli, ["webhooks", *args])

    return run


@pytest.fixture
def webhooks_cli(webhooks_run):
    """`webhooks_cli("rejected")` -> the command's JSON; it must exit 0."""

    def run(*args: str):
        result = webhooks_run(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run


def wait_for_rejection(outbox, key: str) -> None:
    deadline = time.monotonic() + 10
    while key not in [r.key for r in outbox.rejected()]:
        assert time.monotonic() < deadline, f"{key} was not rejected"
        time.sleep(0.02)


def test_the_cli_lists_the_rejected_deliveries_newest_first(redis_store, webhooks_cli):
    alerts = [{**alert(n), "summary": f"surge {n}"} for n in (1, 2, 3)]
    queue_alerts(redis_store, alerts)
    outbox = redis_store.webhook_outbox()
    outbox.reject("a-1", 401, "bad token")
    outbox.reject("a-2", 404, "")
    listed = webhooks_cli("rejected")
    assert [{k: v for k, v in r.items() if k != "rejected_at"} for r in listed] == [
        {"alert_id": "a-2", "status": 404, "answer": "", "summary": "surge 2"},
        {"alert_id": "a-1", "status": 401, "answer": "bad token", "summary": "surge 1"},
    ]
    at = datetime.fromisoformat(listed[0]["rejected_at"].replace("Z", "+00:00"))
    assert listed[0]["rejected_at"].endswith("Z") and abs(at.timestamp() - time.time()) < 60
    assert [r["alert_id"] for r in webhooks_cli("rejected", "--limit", "1")] == ["a-2"]
    assert webhooks_cli("rejected", "--redis-prefix", "another:app:") == []


def test_the_cli_resends_the_rejected_deliveries_asked_for_and_drops_none_waiting(
    redis_settings, redis_prefix, webhooks_cli, webhooks_run, monkeypatch
):
    monkeypatch.setenv("THREEFOLD_ALERTS_WEBHOOK_OUTBOX_MAX", "2")
    store = open_store(redis_settings, redis_prefix, webhook_outbox_max=2)
    queue_alerts(store, [alert(1), alert(2)])
    store.webhook_outbox().reject("a-1", 401, "bad token")
    queue_alerts(store, [alert(3)])  # a-2, a-3: full
    assert webhooks_cli("resend", "a-1") == {"requeued": ["a-1"], "not_found": []}
    assert webhooks_cli("rejected") == []
    nothing = webhooks_run("resend", "--all")
    assert nothing.exit_code == 0, nothing.output
    assert json.loads(nothing.stdout) == {"requeued": [], "not_found": []}
    assert "nothing to re-send: no rejected delivery is on record" in nothing.stderr
    claimed = sorted(e.key for e in store.webhook_outbox().claim("me", 10, 30))
    assert claimed == ["a-1", "a-2", "a-3"]  # nothing waiting was pushed out


def test_a_resend_naming_an_unknown_id_resends_the_others_and_exits_1(
    redis_store, redis_url, redis_prefix
):
    """An operator's script must tell: the ids found are re-sent, the JSON names the missing
    ones, stderr says which and how to list the valid ones, and the process exits 1 (the
    `threefold` console script, as a shell runs it)."""
    queue_alerts(redis_store, [alert(1), alert(2)])
    outbox = redis_store.webhook_outbox()
    outbox.reject("a-1", 401, "bad token")
    env = {**os.environ, "REDIS_URL": redis_url, "THREEFOLD_ALERTS_REDIS_PREFIX": redis_prefix}
    resend = ["alerts", "webhooks", "resend", "a-1", "a-9", "a-2"]  # a-2 waits: not rejected
    result = subprocess.run(
        [*threefold_command(), *resend], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"requeued": ["a-1"], "not_found": ["a-9", "a-2"]}
    assert (
        "Error: 2 of the 3 alert ids are not in the record of rejected deliveries: a-9, a-2 "
        "(re-sent: a-1)."
    ) in result.stderr
    assert "`threefold alerts webhooks rejected` lists the ones that can be re-sent" in (
        result.stderr
    )
    assert sorted(e.key for e in outbox.claim("me", 10, 30)) == ["a-1", "a-2"]


def threefold_command() -> list[str]:
    """This environment's `threefold` console script (or its entry point, run by Python)."""
    beside = Path(sys.executable).parent / "threefold"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from threefold.apps.cli import main; main()"]


def test_an_alert_rejected_with_401_is_delivered_once_after_the_fix_and_a_resend(
    redis_settings, redis_prefix, receiver, kafka_bootstrap, alerts_topic, webhooks_cli
):
    hook = receiver(fail_first=None, fail_status=401, fail_body=b"token expired")
    store = open_store(redis_settings, redis_prefix)
    store.claim_alert(alert(1), cooldown_s=0)
    publisher = AlertPublisher(
        store, JsonProducer(kafka_bootstrap), alerts_topic, webhook=sender(store, hook.url)
    )
    try:
        assert [a["alert_id"] for a in publisher.publish_pending()] == ["a-1"]
        wait_for_rejection(store.webhook_outbox(), "a-1")
        (rejected,) = webhooks_cli("rejected")
        assert (rejected["alert_id"], rejected["status"]) == ("a-1", 401)
        assert rejected["answer"] == "token expired"

        hook.recover()  # the receiver has its new token
        assert webhooks_cli("resend", "--all")["requeued"] == ["a-1"]
        hook.wait_for(delivered=1)
        time.sleep(0.3)  # time for a duplicate to show up, if one were coming
    finally:
        publisher.close()
    assert [status for _, _, status in hook.requests] == [401, 204]
    assert hook.delivered() == ["a-1"] and hook.requests[1][0] == "a-1"  # its Idempotency-Key
    assert webhooks_cli("rejected") == [] and store.webhook_outbox().pending() == 0


# -- an https:// receiver that never finishes the TLS handshake --------------------------------


@pytest.fixture
def stalled_tls_receiver():
    """An https:// URL whose server accepts, reads the ClientHello and then, per `mode`, sends
    nothing or trickles a 16 KiB handshake record a byte at a time; it holds every connection
    open until the test ends, so an attempt that ends, ends by its own deadline."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    accepted: list[socket.socket] = []

    def hold(conn: socket.socket, mode: str) -> None:
        with contextlib.suppress(OSError):
            conn.recv(4096)  # the ClientHello
            if mode == "trickle":
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB...
                while not done.wait(0.1):
                    conn.sendall(b"\x00")  # ...that never ends
            done.wait()

    def serve(mode: str) -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=hold, args=(conn, mode), daemon=True).start()

    def start(mode: str) -> str:
        threading.Thread(target=serve, args=(mode,), daemon=True).start()
        return f"https://127.0.0.1:{listener.getsockname()[1]}/hook"

    try:
        yield start
    finally:
        done.set()
        listener.close()
        for conn in accepted:
            conn.close()


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_a_tls_handshake_that_never_ends_is_a_failed_attempt_cut_at_its_deadline(
    mode, redis_store, stalled_tls_receiver, caplog
):
    """The attempt ends as a failed one, by its deadline (the server never lets go of the
    connection), and the delivery stays in the outbox for its retry. What ends the handshake
    today is its socket timeout (timeout_s, one limit for the whole handshake in CPython's ssl,
    started after connecting), not the attempt's deadline: core.webhook watches the socket only
    once the handshake is done."""
    url = stalled_tls_receiver(mode)
    queue_alerts(redis_store, [alert(1)])
    metrics = AlertsMetrics()
    caplog.set_level(logging.WARNING, logger="threefold.core.webhook")
    webhook = sender(redis_store, url, metrics, timeout_s=1.0)
    webhook.start()
    try:
        deadline = time.monotonic() + 30
        failures = metrics.registry.get_sample_value
        while not failures("threefold_alerts_webhook_failures_total"):
            assert time.monotonic() < deadline, "no attempt ended"
            time.sleep(0.05)
    finally:
        webhook.close()
    failed = [
        r.fields
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == ("webhook_failed")
    ]
    assert failed[0]["error"] == "timed out: no complete answer within 1 s"
    assert (
        redis_store.webhook_outbox().pending() == 1
        and redis_store.webhook_outbox().rejected() == []
    )


# -- a receiver whose name the DNS does not resolve in time --------------------------------------


def test_a_receiver_name_that_does_not_resolve_in_time_is_a_failed_attempt_cut_at_its_deadline(
    redis_store, receiver, monkeypatch, caplog
):
    """Name resolution is inside the attempt's deadline (well within the delivery's lease),
    and the delivery goes out once the DNS answers again."""
    hook = receiver()
    port = int(hook.url.split(":")[2].split("/")[0])
    dns = FakeDNS("hooks.slow-dns.test", [("127.0.0.1", port)])
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    queue_alerts(redis_store, [alert(1)])
    metrics = AlertsMetrics()
    caplog.set_level(logging.WARNING, logger="threefold.core.webhook")
    webhook = sender(redis_store, f"http://{dns.host}:{port}/alerts", metrics, timeout_s=1.0)
    webhook.start()
    try:
        deadline = time.monotonic() + 30
        while not metrics.registry.get_sample_value("threefold_alerts_webhook_failures_total"):
            assert time.monotonic() < deadline, "no attempt ended"
            time.sleep(0.05)
        assert not dns.answered.is_set()  # the attempt ended while the DNS still held out
        assert redis_store.webhook_outbox().pending() == 1
        dns.release()
        hook.wait_for(delivered=1)
    finally:
        dns.release()
        webhook.close()
    failed = [
        r.fields
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "webhook_failed"
    ]
    assert failed[0]["error"] == "timed out: no complete answer within 1 s"
    assert hook.delivered() == ["a-1"]
