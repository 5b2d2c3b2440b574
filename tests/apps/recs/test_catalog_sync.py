"""Workers sharing catalog edits through the Redis change log, on a real redis-server that loses
the log (restarted empty, or its last writes lost) between steps."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

ITEM = {"description": "D", "category": "Home"}


def item_ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def catalog_of(worker, ids: list[str]) -> dict[str, int]:
    """Which of `ids` the worker serves (GET status per id)."""
    return {item_id: worker.get(f"/api/items/{item_id}").status_code for item_id in ids}


def version(worker) -> str:
    return worker.get("/healthz").json["catalog_version"]


def test_a_delete_lost_with_the_log_is_republished_and_never_served_from_the_cache(
    admin_headers, make_app, hung_redis, redis_prefix
):
    """Redis restarted empty after worker A deleted ty-001; ten edits later worker B starts
    from the items file: both counted ten changes, B still held ty-001, its cached list was
    served by A and a click on it was a 422."""
    import redis

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
    }
    worker_a = make_app(**settings).test_client()
    assert worker_a.delete("/api/items/ty-001", headers=admin_headers).status_code == 200
    redis.Redis.from_url(hung_redis.url).flushall()  # a restart without persistence
    edits = [f"re-{n}" for n in range(10)]
    for item_id in edits:
        item = {"item_id": item_id, "title": f"Lamp {item_id}", **ITEM}
        assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    worker_b = make_app(**settings).test_client()

    url = "/api/recommendations?user_id=u001&k=100&exclude_seen=false"
    worker_b.get(url)  # B may rank before A noticed: its list must not reach A
    on_a = worker_a.get(url).json
    assert "ty-001" not in item_ids(on_a)
    for item_id in item_ids(on_a):
        click = {"user_id": "u001", "item_id": item_id, "event": "click"}
        assert worker_a.post("/api/events", json=click).status_code == 202, item_id
    for worker in (worker_a, worker_b):
        assert catalog_of(worker, ["ty-001", *edits]) == {"ty-001": 404} | dict.fromkeys(edits, 200)
        assert "ty-001" not in item_ids(worker.get(url).json)
    assert version(worker_a) == version(worker_b)  # one catalog again: they share lists


def test_a_log_that_lost_its_last_changes_and_grew_back_is_replayed(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """Redis kept the log's first change only (the last writes lost); two new changes made it
    as long as before, so counting alone could not tell that it was another log."""
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    first, lost, new = ["lp-1"], ["lp-2", "lp-3"], ["lq-1", "lq-2"]
    for item_id in first + lost:
        item = {"item_id": item_id, "title": "Log Lamp", **ITEM}
        assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert catalog_of(worker_b, lost) == dict.fromkeys(lost, 200)  # B applied all three
    redis_client.ltrim(f"{redis_prefix}catalog:changes", 0, 0)
    for item_id in new:
        item = {"item_id": item_id, "title": "New Lamp", **ITEM}
        assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    everything = first + lost + new
    for worker in (worker_b, worker_a, worker_b):  # A republishes what the log lost
        assert catalog_of(worker, everything) == dict.fromkeys(everything, 200)
    assert version(worker_a) == version(worker_b)


def test_workers_holding_different_catalogs_report_different_versions(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """The version keys shared cached lists: it names the catalog's content, not only how many
    changes were applied."""
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    assert version(worker_a) == version(worker_b)
    assert worker_a.delete("/api/items/ty-002", headers=admin_headers).status_code == 200
    redis_client.delete(f"{redis_prefix}catalog:changes")  # B never hears of it
    # /healthz does not sync: each holds its own edit only, at one count of applied changes
    assert worker_b.delete("/api/items/ty-003", headers=admin_headers).status_code == 200
    assert version(worker_a) != version(worker_b)
