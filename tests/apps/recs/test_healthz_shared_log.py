"""/healthz reports a shared event log key of the wrong type (no event reaches the other
workers then) as degraded, with the fix, while the storefront's API keeps answering."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

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
    with caplog.at_level(logging.INFO, logger="threefold.apps.recs.shared_events"):
        assert shared.read_new() == []
        assert shared.read_new() == []  # one line per change
        redis_client.delete(log_key)  # the operator's fix
        assert shared.read_new() == []
    records = [r for r in caplog.records if r.name == "threefold.apps.recs.shared_events"]
    found = [(r.levelno, r.fields["event"], r.getMessage()) for r in records]
    assert [(level, event) for level, event, _ in found] == [
        (logging.ERROR, "shared_events_wrong_type"),
        (logging.INFO, "shared_events_resumed"),
    ]
    wrong = found[0][2]
    assert f"redis holds a string at {log_key}" in wrong and "unreachable" not in wrong
    assert "delete or rename that key" in wrong and "last statistics" in wrong
    assert records[0].fields["key"] == log_key
