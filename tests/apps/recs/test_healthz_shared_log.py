"""/healthz reports a shared event log key of the wrong type (no event reaches the other
workers then) as degraded, with the fix, while the storefront's API keeps answering."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from threefold.apps.recs import redis_state
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import RedisState
from threefold.apps.recs.shared_events import SharedEvents
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration


def gauge(client, name: str) -> float:
    rows = [r for r in client.get("/metrics").text.splitlines() if r.startswith(name + " ")]
    return float(rows[0].split()[-1])


def test_healthz_reports_a_shared_log_key_of_another_type_until_it_is_deleted(
    make_app, redis_url: str, redis_prefix: str, redis_client
) -> None:
    client = make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()
    assert client.get("/healthz").status_code == 200
    log_key = f"{redis_prefix}events-log"
    redis_client.set(log_key, "left by another tool")

    health = client.get("/healthz")
    assert health.status_code == 503, health.json
    assert health.json["status"] == "degraded"
    assert health.json["redis"] == "up"
    assert health.json["shared_event_log"] == "wrong type"
    reason = health.json["reason"]
    assert f"redis holds a string at {log_key}" in reason
    assert "delete or rename that key" in reason
    assert gauge(client, "recs_shared_log_wrong_type") == 1

    # degraded, still serving: the storefront's calls answer as usual
    view = {"user_id": "shopper", "item_id": "bk-002", "event": "view"}
    posted = client.post("/api/events", json=view)
    assert posted.status_code == 202 and posted.json["shared"] is False, posted.json
    assert client.get("/api/recommendations?user_id=shopper&k=4").status_code == 200
    assert client.get("/api/items/bk-002/similar?k=4").status_code == 200
    assert client.get("/store").status_code == 200

    redis_client.delete(log_key)  # the operator's fix
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json["status"] == "ok", health.json
    assert "shared_event_log" not in health.json
    assert gauge(client, "recs_shared_log_wrong_type") == 0
    assert client.post("/api/events", json={**view, "item_id": "bk-003"}).json["shared"] is True
    assert redis_client.xlen(log_key) == 2, "the spooled event first, then the new one"


def test_a_worker_logs_a_shared_log_key_of_another_type_as_that_not_as_unreachable(
    redis_url: str, redis_prefix: str, redis_client, caplog: pytest.LogCaptureFixture
) -> None:
    state = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(CollectorRegistry())
    )
    shared = SharedEvents(state, state.metrics)
    log_key = f"{redis_prefix}events-log"
    redis_client.set(log_key, "left by another tool")
    with caplog.at_level(logging.INFO, logger="threefold.apps.recs"):
        assert shared.read_new() == []
        assert shared.read_new() == []  # one line per change
        redis_client.delete(log_key)  # the operator's fix
        assert shared.read_new() == []
    found = [(r.levelno, r.fields["event"], r.getMessage()) for r in caplog.records]
    assert [(level, event) for level, event, _ in found] == [
        (logging.ERROR, "shared_log_wrong_type"),
        (logging.INFO, "shared_log_type_fixed"),
    ]
    wrong = found[0][2]
    assert f"redis holds a string at {log_key}" in wrong and "unreachable" not in wrong
    assert "delete or rename that key" in wrong and "last statistics" in wrong
    assert caplog.records[0].fields["key"] == log_key


def test_a_shared_log_key_of_another_type_is_one_error_line_for_the_whole_worker(
    make_app, redis_url: str, redis_prefix: str, redis_client, caplog: pytest.LogCaptureFixture
) -> None:
    """One cause, one actionable line: the spool's replay, the shared log's reader, the
    appends and /healthz all meet the same key, and before each logged it (two errors with
    the same fix, plus a warning per failed append or read)."""
    client = make_app(
        redis_url=redis_url, redis_prefix=redis_prefix, stats_refresh_seconds=0.0
    ).test_client()
    log_key = f"{redis_prefix}events-log"
    redis_client.set(log_key, "left by another tool")
    with caplog.at_level(logging.INFO, logger="threefold"):
        for n in range(3):  # degraded, never a 500
            view = {"user_id": "shopper", "item_id": f"bk-00{n + 2}", "event": "view"}
            assert client.post("/api/events", json=view).status_code == 202
            assert client.get("/api/recommendations?user_id=shopper&k=4").status_code == 200
            assert client.get("/api/items/bk-002/similar?k=4").status_code == 200
            assert client.get("/healthz").status_code == 503
        redis_client.delete(log_key)  # the operator's fix
        assert client.post("/api/events", json=view).json["shared"] is True
        assert client.get("/api/items/bk-002/similar?k=4").status_code == 200
    about_the_key = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and (log_key in r.getMessage() or "WRONGTYPE" in r.getMessage())
    ]
    assert [(r.levelno, getattr(r, "fields", {}).get("event")) for r in about_the_key] == [
        (logging.ERROR, "shared_log_wrong_type")
    ], [r.getMessage()[:160] for r in about_the_key]
    message = about_the_key[0].getMessage()
    assert f"redis holds a string at {log_key}" in message
    assert "delete or rename that key" in message and "last statistics" in message
    fixed = [r for r in caplog.records if getattr(r, "fields", {}).get("key") == log_key]
    assert [r.fields["event"] for r in fixed] == ["shared_log_wrong_type", "shared_log_type_fixed"]


def test_the_shared_log_error_line_repeats_only_after_the_reminder_interval(
    redis_url: str, redis_prefix: str, redis_client, caplog, monkeypatch
) -> None:
    state = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(CollectorRegistry())
    )
    redis_client.set(f"{redis_prefix}events-log", "left by another tool")
    with caplog.at_level(logging.ERROR, logger="threefold.apps.recs"):
        for _ in range(3):
            assert state.wrong_shared_log_type() == "string"
        assert len(caplog.records) == 1
        monkeypatch.setattr(redis_state, "SHARED_LOG_REMINDER_SECONDS", 0.0)
        assert state.wrong_shared_log_type() == "string"  # still there: reminded
    assert [r.fields["event"] for r in caplog.records] == ["shared_log_wrong_type"] * 2
