"""A worker republishing the catalog edits Redis lost, on a real redis-server: a batch of changes
per round trip, the request that notices the loss publishing one batch at most and one
background thread per worker the rest, the newest edit still winning."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time

import pytest

pytestmark = pytest.mark.integration

ITEM = {"description": "D", "category": "Home"}
PUBLISHER = "recs-catalog-publish"  # the background thread's name


def catalog_sync(app):
    from threefold.apps.recs.web.shared import EXTENSION

    return app.extensions[EXTENSION].catalog_changes


def rpush_calls(raw) -> int:
    """RPUSH commands the server ran since the last CONFIG RESETSTAT: one per round trip that
    appends to the change log (or to the audit trail, one per admin request)."""
    return raw.info("commandstats").get("cmdstat_rpush", {}).get("calls", 0)


def publishers() -> int:
    return sum(thread.name == PUBLISHER for thread in threading.enumerate())


def seed_deletes(raw, key: str, count: int) -> list[str]:
    """`count` stamped deletes in the log, as other workers published them (about 2 KB less than
    an upsert each, so the test stays fast); a worker applying them keeps a tombstone each."""
    ids = [f"rb-{n:04d}" for n in range(count)]
    edited_at = time.time() - 60
    changes = [
        {
            "op": "delete",
            "item_id": item_id,
            "edited_at": edited_at,
            "edit_id": secrets.token_hex(8),
            "id": secrets.token_hex(8),
        }
        for item_id in ids
    ]
    raw.rpush(key, *[json.dumps(change) for change in changes])
    return ids


def logged_items(raw, key: str) -> dict[str, str]:
    """Item id -> op of each change in the log (each item logged once, so none is lost here)."""
    changes = [json.loads(entry) for entry in raw.lrange(key, 0, -1)]
    found = {change.get("item_id") or change["item"]["item_id"]: change["op"] for change in changes}
    assert len(found) == len(changes), "an item was republished twice"
    return found


@pytest.fixture
def big_worker(admin_headers, make_app, hung_redis, redis_prefix):
    """A worker holding edit records for 1,100 deleted items and 2 items added through the API,
    then Redis restarted empty (FLUSHALL): returns (app, its settings, raw client, log key,
    {item id: op} it must republish)."""
    import redis

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
    }
    raw = redis.Redis.from_url(hung_redis.url)
    key = f"{redis_prefix}catalog:changes"
    deleted = seed_deletes(raw, key, 1_100)
    app = make_app(**settings)
    added = [{"item_id": f"rb-new-{n}", "title": f"Imported Lamp {n}", **ITEM} for n in range(2)]
    answer = app.test_client().post("/api/items", json={"items": added}, headers=admin_headers)
    assert answer.status_code == 201
    assert len(catalog_sync(app).edits) == 1_102
    raw.flushall()  # a restart without persistence
    raw.config_resetstat()
    expected = dict.fromkeys(deleted, "delete") | {item["item_id"]: "upsert" for item in added}
    yield app, settings, raw, key, expected
    raw.close()


def test_a_lost_log_is_republished_in_batches_not_a_round_trip_per_item(big_worker, make_app):
    """After Redis lost the log a worker republished each of its 1,102 edit records with a round
    trip of its own (1,102 RPUSH), inside the customer request that noticed the loss."""
    from threefold.apps.recs.redis_state import CHANGE_BATCH

    app, settings, raw, key, expected = big_worker
    assert app.test_client().get("/api/items/rb-new-0").status_code == 200  # notices the loss
    assert catalog_sync(app).wait_for_publishing(timeout=120)

    assert rpush_calls(raw) == math.ceil(len(expected) / CHANGE_BATCH) == 3
    assert logged_items(raw, key) == expected
    later = make_app(**settings).test_client()  # started after the loss: learns it all again
    assert later.get("/api/items/rb-new-1").json["title"] == "Imported Lamp 1"
    assert later.get("/api/items/rb-0999").status_code == 404


def test_the_request_that_notices_publishes_one_batch_and_one_thread_the_rest(
    big_worker, admin_headers, make_app, monkeypatch
):
    """The rest of the republishing runs on one background thread per worker: the request that
    noticed the loss does not wait for it, the requests meanwhile neither wait nor start another,
    and an admin edit made meanwhile is the newest edit everywhere."""
    from threefold.apps.recs.redis_state import CHANGE_BATCH

    app, settings, raw, key, expected = big_worker
    sync = catalog_sync(app)
    release = threading.Event()
    publish_changes = sync.redis.publish_changes

    def held_in_background(changes):  # the background thread waits until the test lets it go
        if threading.current_thread().name == PUBLISHER:
            release.wait(timeout=120)
        return publish_changes(changes)

    monkeypatch.setattr(sync.redis, "publish_changes", held_in_background)
    worker = app.test_client()
    try:
        assert worker.get("/api/items/rb-new-0").status_code == 200  # notices the loss
        assert raw.llen(key) == CHANGE_BATCH and rpush_calls(raw) == 1
        assert publishers() == 1
        for _ in range(3):  # served from what the worker holds; no second republishing
            assert worker.get("/api/items/rb-new-1").status_code == 200
            assert worker.get("/api/recommendations?user_id=u001").status_code == 200
        assert raw.llen(key) == CHANGE_BATCH and rpush_calls(raw) == 1 and publishers() == 1
        # re-added meanwhile: newer than the delete of it still waiting to be republished
        back = {"item_id": "rb-1099", "title": "Back Lamp", **ITEM}
        assert worker.put("/api/items/rb-1099", json=back, headers=admin_headers).status_code == 201
    finally:
        release.set()
    assert sync.wait_for_publishing(timeout=120)

    logged = [json.loads(entry) for entry in raw.lrange(key, 0, -1)]
    assert len(logged) == len(expected) + 1  # each record once, and the edit made meanwhile
    later = make_app(**settings).test_client()
    for reader in (worker, later):
        assert reader.get("/api/items/rb-1099").json["title"] == "Back Lamp"
        assert reader.get("/api/items/rb-0001").status_code == 404
    assert publishers() == 0


def test_an_import_is_published_in_one_round_trip(
    admin_headers, make_app, hung_redis, redis_prefix
):
    """A POST of 40 items published 40 changes, a round trip each."""
    import redis

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
    }
    worker_a = make_app(**settings).test_client()
    worker_b = make_app(**settings).test_client()
    items = [{"item_id": f"im-{n}", "title": f"Imported Chair {n}", **ITEM} for n in range(40)]
    raw = redis.Redis.from_url(hung_redis.url)
    raw.config_resetstat()
    answer = worker_a.post("/api/items", json={"items": items}, headers=admin_headers)
    assert answer.status_code == 201
    assert rpush_calls(raw) == 1 + 1  # the change log, the audit trail
    assert raw.llen(f"{redis_prefix}catalog:changes") == 40
    assert worker_b.get("/api/items/im-39").json["title"] == "Imported Chair 39"


def test_an_import_larger_than_a_batch_is_in_the_log_before_the_201(
    admin_headers, make_app, hung_redis, redis_prefix
):
    """Past CHANGE_BATCH items, a POST answered 201 with only the first batch in the log and the
    rest left to a background thread that a stopping worker does not wait for."""
    import redis

    from threefold.apps.recs.redis_state import CHANGE_BATCH

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
        "max_batch_events": 3 * CHANGE_BATCH,
    }
    worker = make_app(**settings).test_client()
    count = 2 * CHANGE_BATCH + 200
    items = [{"item_id": f"ib-{n}", "title": f"Imported Bench {n}", **ITEM} for n in range(count)]
    raw = redis.Redis.from_url(hung_redis.url)
    raw.config_resetstat()
    answer = worker.post("/api/items", json={"items": items}, headers=admin_headers)
    assert answer.status_code == 201
    assert raw.llen(f"{redis_prefix}catalog:changes") == count
    assert rpush_calls(raw) == 3 + 1  # three batches, the audit trail
    assert publishers() == 0
