"""Recs under faults and bad input, on a real redis-server: nothing accepted is ever lost."""

from __future__ import annotations

import json
import time

import pytest
import redis
from support.services import frozen

from threefold.streaming.services import (
    ManagedProcess,
    free_port,
    redis_server_binary,
    wait_until_ready,
)

pytestmark = pytest.mark.integration
PURCHASES = [
    {"user_id": "spooled-user", "item_id": item, "event": "purchase"}
    for item in ("od-001", "el-001", "ty-001")
]


def redis_on(port: int) -> ManagedProcess:
    """A redis-server on this exact port (to bring "the same" Redis back after an outage)."""
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    process = ManagedProcess("redis", [*argv, "--save", "", "--appendonly", "no"])

    def ready() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    wait_until_ready(process, ready, f"redis-server on port {port}")
    return process


def test_events_accepted_during_an_outage_reach_redis_when_it_returns(
    make_app, redis_prefix: str
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = {"redis_url": url, "redis_prefix": redis_prefix, "redis_retry_seconds": 0.2}
    server = redis_on(port)
    worker = make_app(**settings).test_client()
    server.stop()
    try:
        for event in PURCHASES:
            posted = worker.post("/api/events", json=event)
            assert posted.status_code == 202 and posted.json["shared"] is False
        server = redis_on(port)
        time.sleep(0.3)  # the breaker lets Redis be tried again
        recs = "/api/recommendations?user_id=spooled-user&k=4"
        assert worker.get(recs).status_code == 200  # the next request replays the spool
        stored = redis.Redis.from_url(url).lrange(f"{redis_prefix}history:spooled-user", 0, -1)
        assert len(stored) == 3
        other_worker = make_app(**settings).test_client()
        assert other_worker.get(recs).json["cold_start"] is False
    finally:
        server.stop()


@pytest.mark.parametrize("timestamp", [1e15, "2999-01-01T00:00:00Z", time.time() + 3600])
def test_future_timestamps_are_refused(make_app, timestamp) -> None:
    client = make_app().test_client()
    event = {"user_id": "u001", "item_id": "od-001", "timestamp": timestamp}
    response = client.post("/api/events", json=event)
    assert response.status_code == 400
    assert response.json["field"] == "timestamp"
    assert "in the future" in response.json["message"]
    near = client.post("/api/events", json={**event, "timestamp": time.time() + 30})
    assert near.status_code == 202  # small clock skew is fine


def test_lone_surrogate_is_a_400_and_redis_stays_in_use(
    make_app, redis_url: str, redis_prefix: str, admin_headers
) -> None:
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker_a, worker_b = (make_app(**settings).test_client() for _ in range(2))
    hostile = b'{"user_id": "\\ud800", "item_id": "od-001"}'
    response = worker_a.post("/api/events", data=hostile, content_type="application/json")
    assert response.status_code == 400
    assert worker_a.get("/healthz").json["redis"] == "up"
    item = {
        "item_id": "rel-1",
        "title": "Reliable Lamp",
        "description": "A desk lamp.",
        "category": "Home",
    }
    assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert worker_b.get("/api/items/rel-1").status_code == 200


def test_nan_metadata_is_refused(make_app, admin_headers) -> None:
    client = make_app().test_client()
    body = b'{"item_id": "nan-1", "title": "T", "description": "D", "category": "Home",'
    body += b' "metadata": {"x": NaN}}'
    response = client.post(
        "/api/items", data=body, content_type="application/json", headers=admin_headers
    )
    assert response.status_code == 400
    assert "NaN" in response.json["message"]
    assert client.get("/api/items/nan-1").status_code == 404


def test_item_changes_are_audited_in_redis(
    make_app, redis_url: str, redis_prefix: str, admin_headers, caplog
) -> None:
    client = make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()
    item = {"item_id": "aud-1", "title": "Audited", "description": "D", "category": "Home"}
    assert client.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert client.delete("/api/items/aud-1", headers=admin_headers).status_code == 200
    records = [
        json.loads(raw)
        for raw in redis.Redis.from_url(redis_url).lrange(f"{redis_prefix}audit", 0, -1)
    ]
    assert [(r["who"], r["action"], r["item_ids"]) for r in records] == [
        ("admin", "items.store", ["aud-1"]),
        ("admin", "items.delete", ["aud-1"]),
    ]
    assert all(r["ts"] > 0 for r in records)
    assert "test-admin-token" not in caplog.text


def test_events_are_rate_limited_by_default(make_app, redis_url: str, redis_prefix: str) -> None:
    from threefold.apps.recs.config import RecsConfig

    assert RecsConfig().rate_limit_per_minute  # on by default
    client = make_app(
        redis_url=redis_url, redis_prefix=redis_prefix, rate_limit_per_minute=8
    ).test_client()
    event = {"user_id": "u001", "item_id": "od-001"}
    statuses = [client.post("/api/events", json=event).status_code for _ in range(4)]
    assert statuses[:2] == [202, 202] and statuses[-1] == 429
    limited = client.post("/api/events", json=event)
    assert int(limited.headers["Retry-After"]) >= 1


def test_a_click_on_a_list_served_during_an_outage_counts_once_redis_returns(
    make_app, hung_redis, redis_prefix: str
) -> None:
    settings = {"redis_prefix": redis_prefix, "redis_retry_seconds": 0.2}
    worker = make_app(redis_url=hung_redis.url, **settings).test_client()
    with frozen(hung_redis):
        shown = worker.get("/api/recommendations?user_id=outage-shopper&k=4").json
        click = {
            "user_id": "outage-shopper",
            "item_id": shown["items"][0]["item_id"],
            "event": "click",
            "list_id": shown["list_id"],
        }
        assert worker.post("/api/events", json=click).json["shared"] is False  # both spooled
    time.sleep(0.3)  # the breaker lets Redis be tried again
    # the next event replays the spooled click; the spooled list must be stored before it
    assert worker.post("/api/events", json={**click, "event": "view"}).json["shared"]
    ctr = worker.get("/api/impressions/ctr").json["versions"][shown["model_version"]]
    assert (ctr["lists"], ctr["shown"], ctr["click"]) == (1, 4, 1)
