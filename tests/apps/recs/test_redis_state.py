"""The Redis side in a real embedded redis-server: cache hits, invalidation, sharing, outages."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from support.redis_reads import count_redis_reads
from support.services import frozen

from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import RedisState
from threefold.core.rate_limit import SharedRateLimiter
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration


def item_ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def metric(client, name: str, labels: str = "") -> float:
    """Sum of the samples of `name` whose labels contain `labels` (e.g. 'result="hit"')."""
    text = client.get("/metrics").get_data(as_text=True)
    pattern = rf"^{re.escape(name)}(?:{{([^}}]*)}})? ([0-9.e+-]+)$"
    return sum(
        float(value)
        for found_labels, value in re.findall(pattern, text, flags=re.MULTILINE)
        if labels in found_labels
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_second_request_is_a_cache_hit_until_the_user_acts(
    make_app, redis_url, redis_prefix, redis_client
):
    client = make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()
    url = "/api/recommendations?user_id=u003&k=5"
    first = client.get(url).json
    assert first["cached"] is False
    second = client.get(url).json
    assert second["cached"] is True
    assert item_ids(second) == item_ids(first)
    key = f"{redis_prefix}recs:u003".encode()
    assert redis_client.exists(key)
    assert 0 < redis_client.ttl(key) <= 300
    assert metric(client, "recs_cache_hit_rate") == pytest.approx(0.5)

    clicked = item_ids(first)[0]
    event = {"user_id": "u003", "item_id": clicked, "event": "click"}
    posted = client.post("/api/events", json=event)
    assert posted.status_code == 202
    assert posted.json["shared"] is True
    assert not redis_client.exists(key)  # invalidated
    after = client.get(url).json
    assert after["cached"] is False
    assert clicked not in item_ids(after)
    assert client.get(url).json["cached"] is True
    assert client.get("/healthz").json["cache"] == {
        "hits": 2,
        "misses": 2,
        "unavailable": 0,
        "hit_rate": 0.5,
    }


def test_workers_share_histories_and_catalog_changes(
    admin_headers, make_app, redis_url, redis_prefix
):
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    assert worker_b.get("/api/recommendations?user_id=roaming&k=3").json["cold_start"]
    worker_a.post("/api/events", json={"user_id": "roaming", "item_id": "bt-007"})
    on_b = worker_b.get("/api/recommendations?user_id=roaming&k=3").json
    assert on_b["cold_start"] is False
    assert "bt-007" not in item_ids(on_b)

    new_item = {
        "item_id": "bt-300",
        "title": "Long-Wear Liquid Lipstick",
        "description": "Transfer-proof liquid lipstick in a velvet matte finish, twelve shades.",
        "category": "Beauty",
        "tags": ["makeup", "lipstick", "matte"],
    }
    assert worker_a.post("/api/items", json=new_item, headers=admin_headers).status_code == 201
    assert worker_b.get("/api/items/bt-300").status_code == 200
    similar = worker_b.get("/api/items/bt-007/similar?k=3").json
    assert "bt-300" in item_ids(similar)
    assert worker_a.delete("/api/items/bt-300", headers=admin_headers).status_code == 200
    assert worker_b.get("/api/items/bt-300").status_code == 404


def test_a_list_ranked_before_a_purchase_is_not_served_from_the_cache_after_it(
    make_app, redis_url, redis_prefix
):
    """A request that read the history before a purchase on another worker, and cached its list
    after that event's invalidation, must not serve the bought item to later requests."""
    from threefold.apps.recs.web.shared import EXTENSION

    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    app_b = make_app(**settings)
    worker_a, worker_b = make_app(**settings).test_client(), app_b.test_client()
    worker_a.post("/api/events", json={"user_id": "racer", "item_id": "kt-003"})
    url = "/api/recommendations?user_id=racer&k=5"
    bought = item_ids(worker_b.get(url + "&diversity=0.5").json)[0]
    recommender = app_b.extensions[EXTENSION].recommender
    ranking, purchased = threading.Event(), threading.Event()
    original = recommender.recommend

    def slow_recommend(*args, **kwargs):  # the history was read already
        ranking.set()
        purchased.wait(10)
        return original(*args, **kwargs)

    recommender.recommend = slow_recommend
    racing = threading.Thread(target=worker_b.get, args=(url,))
    racing.start()
    assert ranking.wait(10)
    purchase = {"user_id": "racer", "item_id": bought, "event": "purchase"}
    assert worker_a.post("/api/events", json=purchase).status_code == 202
    purchased.set()
    racing.join(10)
    recommender.recommend = original
    for worker in (worker_a, worker_b):
        assert bought not in item_ids(worker.get(url).json)


def test_unreachable_redis_still_answers(make_app):
    client = make_app(redis_url=f"redis://127.0.0.1:{closed_port()}/0").test_client()
    url = "/api/recommendations?user_id=offline-user&k=4"
    assert client.get(url).status_code == 200
    posted = client.post("/api/events", json={"user_id": "offline-user", "item_id": "od-001"})
    assert posted.status_code == 202
    assert posted.json["shared"] is False
    after = client.get(url)
    assert after.status_code == 200
    assert after.json["cold_start"] is False  # this worker remembers the event
    assert "od-001" not in item_ids(after.json)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["status"] == "degraded"
    assert health.json["redis"] == "unreachable"
    assert metric(client, "recs_redis_errors_total") >= 1
    assert metric(client, "recs_cache_lookups_total", 'result="unavailable"') >= 1
    assert metric(client, "recs_redis_available") == 0


def test_redis_stopping_mid_service_does_not_break_requests(make_app, redis_prefix):
    from threefold.streaming.services import start_redis

    service = start_redis()
    try:
        client = make_app(redis_url=service.url, redis_prefix=redis_prefix).test_client()
        url = "/api/recommendations?user_id=u005&k=4"
        client.get(url)
        assert client.get(url).json["cached"] is True
    finally:
        service.stop()
    down = client.get(url)
    assert down.status_code == 200
    assert down.json["cached"] is False
    assert (
        client.post("/api/events", json={"user_id": "u005", "item_id": "el-001"}).status_code == 202
    )
    assert client.get("/healthz").json["redis"] == "unreachable"


def test_a_worker_follows_catalog_changes_after_redis_lost_the_change_log(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """Redis restarted empty (or lost its last writes): the log is shorter than what a worker
    applied, and the changes published after it must still reach that worker."""
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    for item_id in ("lg-1", "lg-2"):
        item = {"item_id": item_id, "title": "Log Lamp", "description": "D", "category": "Home"}
        assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert worker_b.get("/api/items/lg-2").status_code == 200  # b applied both changes
    redis_client.delete(f"{redis_prefix}catalog:changes")
    assert worker_a.delete("/api/items/bk-001", headers=admin_headers).status_code == 200
    assert worker_b.get("/api/items/bk-001").status_code == 404
    recs = worker_b.get("/api/recommendations?user_id=lost-log&k=100").json
    assert "bk-001" not in item_ids(recs)


def test_item_changes_made_during_an_outage_reach_the_other_workers_when_redis_is_back(
    admin_headers, make_app, hung_redis, redis_prefix
):
    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
        "redis_retry_seconds": 0.0,
    }
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    lamp = {"item_id": "ol-1", "title": "Outage Lamp", "description": "D", "category": "Home"}
    with frozen(hung_redis):
        assert worker_a.post("/api/items", json=lamp, headers=admin_headers).status_code == 201
        assert worker_a.delete("/api/items/bk-001", headers=admin_headers).status_code == 200
        assert worker_b.delete("/api/items/bk-002", headers=admin_headers).status_code == 200
        versions = {w.get("/healthz").json["catalog_version"] for w in (worker_a, worker_b)}
        assert len(versions) == 2  # different catalogs: their cached lists must not mix
    for worker in (worker_a, worker_b, worker_a):  # each one's first sync publishes its edits
        assert worker.get("/api/items/ol-1").status_code == 200
    for gone in ("bk-001", "bk-002"):
        assert worker_a.get(f"/api/items/{gone}").status_code == 404
        assert worker_b.get(f"/api/items/{gone}").status_code == 404
        for worker in (worker_a, worker_b):
            recs = worker.get("/api/recommendations?user_id=u9&k=100").json
            assert gone not in item_ids(recs)
    versions = {w.get("/healthz").json["catalog_version"] for w in (worker_a, worker_b)}
    assert len(versions) == 1  # one catalog again (a change sent as Redis froze may be logged
    # twice: the worker could not know it arrived; applying it again changes nothing)


@pytest.mark.parametrize("shared", [True, False])
def test_a_purchase_stays_excluded_however_many_events_follow_it(
    make_app, redis_url, redis_prefix, shared
):
    """Only the last `history_limit` events are kept per user; a purchase older than those
    came back as a recommendation."""
    url = redis_url if shared else None
    client = make_app(redis_url=url, redis_prefix=redis_prefix, history_limit=5).test_client()
    user = "long-memory"
    bought = {"user_id": user, "item_id": "kt-003", "event": "purchase"}
    assert client.post("/api/events", json=bought).status_code == 202
    later = [
        {"user_id": user, "item_id": item, "event": "view"}
        for item in ("kt-001", "kt-002", "kt-004", "kt-005", "kt-006", "kt-007")
    ]
    assert client.post("/api/events", json={"events": later}).status_code == 202
    recs = client.get(f"/api/recommendations?user_id={user}&k=60&exclude_seen=false").json
    assert "kt-003" not in item_ids(recs)


@pytest.mark.parametrize("shared", [True, False])
def test_a_retried_event_with_the_same_event_id_counts_once(
    make_app, redis_url, redis_prefix, shared
):
    """A client that timed out and posted again counted the purchase twice (history,
    popularity, the reasons)."""
    url = redis_url if shared else None
    app_a = make_app(redis_url=url, redis_prefix=redis_prefix)
    workers = [app_a.test_client()]
    if shared:  # the retry may reach another worker
        workers.append(make_app(redis_url=url, redis_prefix=redis_prefix).test_client())
    bought = {"user_id": "retrier", "item_id": "kt-003", "event": "purchase", "event_id": "e-1"}
    first = workers[0].post("/api/events", json={"events": [bought, bought]}).json
    assert (first["accepted"], first["duplicates"]) == (1, 1)
    again = workers[-1].post("/api/events", json=bought).json
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    other = workers[-1].post("/api/events", json={**bought, "event_id": "e-2"}).json
    assert other["accepted"] == 1
    from threefold.apps.recs.web.shared import EXTENSION

    history = app_a.extensions[EXTENSION].histories.get("retrier")
    assert [e.event_id for e in history] == ["e-1", "e-2"]
    bad = workers[0].post("/api/events", json={**bought, "event_id": "no spaces"})
    assert bad.status_code == 400 and bad.json["field"] == "event_id"


def test_the_rate_limiter_on_its_client_shares_the_breaker_recs_opened(
    hung_redis, redis_prefix, monkeypatch, caplog
):
    """One breaker per client (as `create_app` wires them): once the recs state waited out a
    timeout, neither the rate limiter nor the state asks the frozen Redis until one probes."""
    state = RedisState(
        RedisSettings(url=hung_redis.url),
        prefix=redis_prefix,
        metrics=RecsMetrics(CollectorRegistry()),
        timeout_seconds=0.3,
        retry_seconds=60.0,
    )
    limiter = SharedRateLimiter(state.client(), prefix=redis_prefix, rate_per_minute=6000)
    breaker = limiter.breaker
    assert breaker.retry_s == 60.0  # the state's redis_retry_seconds, not the limiter's default
    assert state.available and limiter.acquire("a") == 0
    reads = count_redis_reads(monkeypatch)
    with frozen(hung_redis), caplog.at_level(logging.WARNING):
        assert not state.available  # one timeout opens the breaker
        tried = reads.count
        assert limiter.acquire("a") == 0  # the per-process bucket, Redis not asked
        assert state.get_recs("u1", "list") is None and not state.takes_writes()
        assert reads.count == tried
        breaker.clock = lambda: time.monotonic() + 60  # the retry time has passed
        assert limiter.acquire("a") == 0  # the one probe: it times out, the breaker reopens
        assert reads.count == tried + 1
        assert not state.available and reads.count == tried + 1
    assert caplog.text.count("redis unavailable during ping") == 1  # each user logs once
    assert caplog.text.count("per-process limits") == 1
    breaker.clock = lambda: time.monotonic() + 200
    assert state.available and not breaker.is_open
