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


def two_workers(make_app, hung_redis, redis_prefix) -> tuple:
    """Two workers on a redis-server of this test's own (`flushall` there: a restart without
    persistence), and a client of it."""
    import redis

    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "catalog_sync_seconds": 0.0,
    }
    app_a, app_b = make_app(**settings), make_app(**settings)
    return app_a, app_b, redis.Redis.from_url(hung_redis.url)


@pytest.mark.parametrize("first", ["older", "newer"])
def test_the_newest_edit_wins_on_every_worker_after_redis_lost_the_log(
    first, admin_headers, make_app, hung_redis, redis_prefix
):
    """Reviewer's repro: A added rv-x (v1), B replaced it (v2), A made no request, Redis
    restarted empty. Whichever worker synced first won: A republished v1 as it last saw it and
    both served v1 for ever, undoing the admin's newer edit on the worker that made it."""
    app_a, app_b, raw = two_workers(make_app, hung_redis, redis_prefix)
    worker_a, worker_b = app_a.test_client(), app_b.test_client()
    item = {"item_id": "rv-x", "title": "Title v1", **ITEM}
    assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert worker_b.get("/api/items/rv-x").json["title"] == "Title v1"
    edit = {**item, "title": "Title v2"}
    assert worker_b.put("/api/items/rv-x", json=edit, headers=admin_headers).status_code == 200
    raw.flushall()  # a restart without persistence

    order = [worker_a, worker_b] if first == "older" else [worker_b, worker_a]
    for worker in order:  # the first request after the loss on each
        worker.get("/api/items/rv-x")
    for worker in (*order, *order):
        assert worker.get("/api/items/rv-x").json["title"] == "Title v2"
    assert version(worker_a) == version(worker_b)


@pytest.mark.parametrize("first", ["older", "newer"])
def test_a_delete_made_after_another_workers_add_stays_deleted_after_redis_lost_the_log(
    first, admin_headers, make_app, hung_redis, redis_prefix
):
    """Reviewer's repro: A added rd-x, B deleted it, Redis restarted empty: A republished its
    add and both served rd-x again."""
    app_a, app_b, raw = two_workers(make_app, hung_redis, redis_prefix)
    worker_a, worker_b = app_a.test_client(), app_b.test_client()
    item = {"item_id": "rd-x", "title": "Doomed Lamp", **ITEM}
    assert worker_a.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert worker_b.get("/api/items/rd-x").status_code == 200
    assert worker_b.delete("/api/items/rd-x", headers=admin_headers).status_code == 200
    raw.flushall()

    order = [worker_a, worker_b] if first == "older" else [worker_b, worker_a]
    for worker in order:
        worker.get("/api/items/rd-x")
    for worker in (*order, *order):
        assert catalog_of(worker, ["rd-x"]) == {"rd-x": 404}
    assert version(worker_a) == version(worker_b)


def test_a_worker_keeps_one_edit_record_per_item_however_often_it_is_edited(
    admin_headers, make_app, hung_redis, redis_prefix
):
    """Each worker kept the id of every change to an item it had edited: 300 PUTs, 300 ids
    (about 380 MB per worker at a million API-added items)."""
    from threefold.apps.recs.web.shared import EXTENSION

    app_a, app_b, raw = two_workers(make_app, hung_redis, redis_prefix)
    worker_a, worker_b = app_a.test_client(), app_b.test_client()
    for n in range(300):
        item = {"item_id": "ed-1", "title": f"Edited Lamp {n}", **ITEM}
        answer = worker_a.put("/api/items/ed-1", json=item, headers=admin_headers)
        assert answer.status_code == (201 if n == 0 else 200)
    assert worker_b.get("/api/items/ed-1").json["title"] == "Edited Lamp 299"
    for app in (app_a, app_b):
        assert len(app.extensions[EXTENSION].catalog_changes.edits) == 1
    raw.flushall()
    worker_b.get("/api/items/ed-1")  # B republishes the item once, as it is now
    assert raw.llen(f"{redis_prefix}catalog:changes") == 1
    assert worker_a.get("/api/items/ed-1").json["title"] == "Edited Lamp 299"


def test_changes_logged_without_an_edit_time_still_apply_on_a_fresh_worker(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """A log written before changes carried `edited_at` (some before they had ids): a worker
    started now applies it in log order, and a new edit still wins over it."""
    import json

    key = f"{redis_prefix}catalog:changes"
    logged = [
        {"op": "upsert", "item": {"item_id": "lg-1", "title": "Old Lamp", **ITEM}},
        {"op": "upsert", "item": {"item_id": "lg-2", "title": "Old Desk", **ITEM}, "id": "a1"},
        {"op": "upsert", "item": {"item_id": "lg-2", "title": "Old Desk 2", **ITEM}, "id": "0f"},
        {"op": "delete", "item_id": "lg-1", "id": "b2"},
        {"op": "upsert", "item": {"item_id": "lg-3", "title": "Old Chair", **ITEM}},
    ]
    redis_client.rpush(key, *[json.dumps(change) for change in logged])
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker = make_app(**settings).test_client()
    assert catalog_of(worker, ["lg-1", "lg-2", "lg-3"]) == {"lg-1": 404, "lg-2": 200, "lg-3": 200}
    assert worker.get("/api/items/lg-2").json["title"] == "Old Desk 2"
    edit = {"item_id": "lg-3", "title": "New Chair", **ITEM}
    assert worker.put("/api/items/lg-3", json=edit, headers=admin_headers).status_code == 200
    redis_client.rpush(key, json.dumps(logged[-1]))  # an old worker republishing its state
    other = make_app(**settings).test_client()
    for reader in (worker, other):
        assert reader.get("/api/items/lg-3").json["title"] == "New Chair"


def test_a_logged_change_that_is_not_an_object_is_skipped_not_a_500(
    make_app, redis_url, redis_prefix, redis_client
):
    """Whatever else wrote to the log (a list, a number, a string), a worker skips it, logs it,
    and applies the changes after it."""
    import json

    key = f"{redis_prefix}catalog:changes"
    good = {"op": "upsert", "item": {"item_id": "nj-1", "title": "Lamp", **ITEM}, "id": "c1"}
    redis_client.rpush(key, "[1, 2]", "42", json.dumps("text"), json.dumps(good))
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker = make_app(**settings).test_client()
    assert worker.get("/api/items/nj-1").status_code == 200
    assert worker.get("/api/recommendations?user_id=u001").status_code == 200


def test_edit_records_keep_the_newest_edit_per_item_and_the_latest_tombstones():
    """One entry per item; deleted items are kept as tombstones, the oldest dropped first."""
    from threefold.apps.recs.catalog_sync import UNSTAMPED, EditRecords, EditStamp

    records = EditRecords(tombstones_kept=2)
    records.note("a", EditStamp(2.0, "x"), deleted=False)
    assert records.outdated("a", EditStamp(1.0, "z")) and records.outdated("a", UNSTAMPED)
    assert records.outdated("a", EditStamp(2.0, "x"))  # the same edit again: applied already
    assert not records.outdated("a", EditStamp(2.0, "y")) and not records.outdated("b", UNSTAMPED)
    for n, item_id in enumerate(["a", "b", "c"]):
        records.note(item_id, EditStamp(3.0 + n, "x"), deleted=True)
    assert [(item_id, deleted) for item_id, _, deleted in records] == [("b", True), ("c", True)]
    records.note("b", EditStamp(9.0, "x"), deleted=False)
    assert len(records) == 2 and records.held("b") == EditStamp(9.0, "x")
    records.note("u", UNSTAMPED, deleted=False)
    assert not records.outdated("u", UNSTAMPED)  # changes logged without a stamp: in log order


def test_an_edit_made_after_one_from_a_clock_ahead_is_still_the_newer_one(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """Another worker's clock is an hour ahead: an edit made here after its edit was applied
    here still wins, on this worker and on one started later."""
    import json
    import time

    key = f"{redis_prefix}catalog:changes"
    ahead = {
        "op": "upsert",
        "item": {"item_id": "ck-1", "title": "Ahead Lamp", **ITEM},
        "edited_at": time.time() + 3600,
        "edit_id": "f" * 16,
        "id": "a" * 16,
    }
    redis_client.rpush(key, json.dumps(ahead))
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "catalog_sync_seconds": 0.0}
    worker = make_app(**settings).test_client()
    assert worker.get("/api/items/ck-1").json["title"] == "Ahead Lamp"
    edit = {"item_id": "ck-1", "title": "Later Lamp", **ITEM}
    assert worker.put("/api/items/ck-1", json=edit, headers=admin_headers).status_code == 200
    later = make_app(**settings).test_client()
    for reader in (worker, later):
        assert reader.get("/api/items/ck-1").json["title"] == "Later Lamp"
