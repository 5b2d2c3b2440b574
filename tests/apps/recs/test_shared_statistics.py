"""Popularity, trending and co-occurrence are counted from the event log every worker shares in
Redis, so two workers (or replicas) rank the same list for the same user; with Redis down a
worker keeps its last statistics, says so, and counts spooled events once when Redis returns."""

from __future__ import annotations

import logging
import time

import pytest
from support.services import frozen

from threefold.apps.recs.web.shared import EXTENSION

pytestmark = pytest.mark.integration
NEWCOMER = "newcomer"  # no history: the popular + trending list


def item_ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def fresh_list(client, redis_client, prefix: str, user: str = NEWCOMER) -> list[str]:
    """The user's list ranked now by this worker (the shared cached one expired)."""
    redis_client.delete(f"{prefix}recs:{user}")
    response = client.get(f"/api/recommendations?user_id={user}&k=10")
    assert response.status_code == 200, response.json
    assert response.json["cached"] is False
    return item_ids(response.json)


def bought_by_many(client, item_id: str, users: int = 30) -> dict:
    events = [
        {"user_id": f"buyer-{n}", "item_id": item_id, "event": "purchase"} for n in range(users)
    ]
    response = client.post("/api/events", json={"events": events})
    assert response.status_code == 202, response.json
    return response.json


def unpopular_item(app, shown: list[str]) -> str:
    """A catalog item the popular list does not show."""
    catalog = app.extensions[EXTENSION].recommender.catalog
    return next(item.item_id for item in reversed(list(catalog)) if item.item_id not in shown)


def metric(client, name: str) -> float:
    rows = [r for r in client.get("/metrics").text.splitlines() if r.startswith(name + " ")]
    return float(rows[0].split()[-1])


def test_events_posted_to_one_worker_rank_the_same_lists_on_every_worker(
    make_app, redis_url, redis_prefix, redis_client
) -> None:
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "stats_refresh_seconds": 0}
    app_a = make_app(**settings)
    a, b = app_a.test_client(), make_app(**settings).test_client()
    before = fresh_list(a, redis_client, redis_prefix)
    assert fresh_list(b, redis_client, redis_prefix) == before
    target = unpopular_item(app_a, before)

    assert bought_by_many(a, target)["shared"] is True
    on_a = fresh_list(a, redis_client, redis_prefix)
    assert target in on_a[:3], "30 purchases make it popular and trending"
    assert fresh_list(b, redis_client, redis_prefix) == on_a, "the other worker counted them"
    warm_a = fresh_list(a, redis_client, redis_prefix, user="u003")
    assert fresh_list(b, redis_client, redis_prefix, user="u003") == warm_a

    # a worker started afterwards (a restart, a new replica) reads them from the shared log
    c = make_app(**settings).test_client()
    assert fresh_list(c, redis_client, redis_prefix) == on_a
    assert metric(c, "recs_shared_events_read_total") == 30


def similar_ids(client, item_id: str, k: int) -> list[str]:
    response = client.get(f"/api/items/{item_id}/similar?k={k}")
    assert response.status_code == 200, response.json
    return item_ids(response.json)


def test_events_posted_to_one_worker_reorder_similar_items_the_same_on_every_worker(
    make_app, redis_url, redis_prefix
) -> None:
    """Co-occurrence breaks ties among similar items: each worker counts it from the shared
    log, as for recommendations. Before, `/similar` neither read the log nor recounted, so the
    worker the events were posted to and the others answered from different (or no) counts."""
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "stats_refresh_seconds": 0}
    a, b = make_app(**settings).test_client(), make_app(**settings).test_client()
    item, k = "el-005", 5  # its 5th and 6th nearest items are close in text
    before = similar_ids(a, item, k + 1)
    assert similar_ids(b, item, k + 1) == before
    runner_up = before[k]
    together = [
        {"user_id": f"pair-{n}", "item_id": both, "event": "view"}
        for n in range(20)
        for both in (item, runner_up)
    ]
    assert a.post("/api/events", json={"events": together}).json["shared"] is True

    on_b = similar_ids(b, item, k)  # b only saw them in the shared log
    assert runner_up in on_b, "viewed together 20 times: the tie-breaker lifts it"
    assert similar_ids(a, item, k) == on_b


def test_with_redis_down_a_worker_keeps_its_statistics_and_counts_spooled_events_once(
    make_app, hung_redis, redis_client, redis_prefix, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "stats_refresh_seconds": 0,
        "redis_retry_seconds": 0.2,
    }
    app_a, app_b = make_app(**settings), make_app(**settings)
    a, b = app_a.test_client(), app_b.test_client()
    shared_redis = redis.Redis.from_url(hung_redis.url)
    seed = len(app_a.extensions[EXTENSION].recommender.events())
    before = fresh_list(a, shared_redis, redis_prefix)
    target = unpopular_item(app_a, before)
    with frozen(hung_redis), caplog.at_level(logging.WARNING):
        assert bought_by_many(a, target)["shared"] is False  # spooled, counted by a alone
        assert target in item_ids(a.get(f"/api/recommendations?user_id={NEWCOMER}").json)
        answer = b.get(f"/api/recommendations?user_id={NEWCOMER}&k=10")
        assert answer.status_code == 200 and item_ids(answer.json) == before, "last statistics"
        assert metric(b, "recs_shared_events_available") == 0
    [stale, *_] = [
        r
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "shared_events_unreachable"
    ]
    assert "last statistics" in stale.getMessage()

    time.sleep(0.3)  # the breaker lets Redis be tried again
    # a's next post replays its spool into the shared log first, then reads the log back
    view = {"user_id": "browser", "item_id": target, "event": "view"}
    assert a.post("/api/events", json=view).json["shared"] is True
    on_a = fresh_list(a, shared_redis, redis_prefix)
    assert fresh_list(b, shared_redis, redis_prefix) == on_a and target in on_a[:3]
    assert metric(b, "recs_shared_events_available") == 1
    # a counted its spooled events when it took them and skipped them in the log: each worker
    # counts the seed log plus every log entry once. The write that timed out in the frozen
    # Redis reached it when it thawed; the spool's replay of it stored nothing again.
    assert shared_redis.xlen(f"{redis_prefix}events-log") == 31
    for app in (app_a, app_b):
        assert len(app.extensions[EXTENSION].recommender.events()) == seed + 31
