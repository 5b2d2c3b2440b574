"""A worker replaying a long catalog change log on a real redis-server: one rebuild of the
feature tables per read rather than per change, every read of the log bounded."""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.integration

ITEM = {"description": "D", "category": "Home"}
SETTINGS = {"catalog_sync_seconds": 0.0}


def catalog_sync(app):
    from threefold.apps.recs.web.shared import EXTENSION

    return app.extensions[EXTENSION].catalog_changes


def stamped(change: dict, edited_at: float) -> dict:
    """`change` as a worker logs it: with the edit's stamp and an id of its own."""
    return {
        **change,
        "edited_at": edited_at,
        "edit_id": secrets.token_hex(8),
        "id": secrets.token_hex(8),
    }


def deletes(prefix: str, count: int, edited_at: float) -> list[dict]:
    """Stamped deletes of items no worker holds (cheap to log and to apply: no rebuild)."""
    return [
        stamped({"op": "delete", "item_id": f"{prefix}-{n:04d}"}, edited_at) for n in range(count)
    ]


@pytest.fixture
def count_rebuilds(monkeypatch) -> Callable[[], int]:
    """How many times the recommenders of this process rebuilt their feature tables."""
    from threefold.apps.recs import recommender

    calls = []
    feature_tables = recommender.feature_tables

    def counted(*args, **kwargs):
        calls.append(1)
        return feature_tables(*args, **kwargs)

    monkeypatch.setattr(recommender, "feature_tables", counted)
    return lambda: len(calls)


@contextmanager
def log_reads(raw, key: str) -> Iterator[list[tuple[int, int]]]:
    """(start, stop) of every LRANGE of `key` the server ran inside the block (MONITOR)."""
    sentinel = f"end-of-reads-{secrets.token_hex(4)}"
    reads: list[tuple[int, int]] = []
    monitor = raw.monitor()
    with monitor:
        yield reads
        raw.echo(sentinel)
        while (command := monitor.next_command()["command"]) != f"ECHO {sentinel}":
            words = command.split(" ")
            if words[0].upper() == "LRANGE" and words[1] == key:
                reads.append((int(words[2]), int(words[3])))


def catalog_state(app) -> list[tuple[dict, list[float] | None]]:
    """Each item the worker serves, in catalog order, with its vector."""
    recommender = catalog_sync(app).recommender
    return [
        (item.to_dict(), None if (v := recommender.vector_of(item.item_id)) is None else v.tolist())
        for item in recommender.catalog
    ]


def test_a_replayed_log_rebuilds_once_per_read_and_ends_as_applied_one_by_one(
    make_app, embedder, redis_url, redis_prefix, redis_client, count_rebuilds
):
    """A worker applying 120 upserts another worker imported rebuilt its feature tables 120
    times (seconds each at a million items). Now once per read of the log (a delete between
    two upserts of one item splits the read in two), the newest edit of each item still winning,
    to the catalog a worker applying the changes one at a time ends with."""
    from threefold.apps.recs.catalog_sync import encode_vector
    from threefold.apps.recs.redis_state import CHANGE_READ_BATCH

    key = f"{redis_prefix}catalog:changes"
    reader = make_app(redis_url=redis_url, redis_prefix=redis_prefix, **SETTINGS)
    model_id = catalog_sync(reader).model_id
    now = time.time() - 600
    items = [{"item_id": f"rp-{n:03d}", "title": f"Replayed Lamp {n}", **ITEM} for n in range(120)]
    vectors = embedder.encode([item["title"] for item in items])

    def upsert(item: dict, vector) -> dict:
        return {"op": "upsert", "item": item, "model_id": model_id, "vector": encode_vector(vector)}

    imported = [stamped(upsert(item, vectors[n]), now + n) for n, item in enumerate(items)]
    padding = CHANGE_READ_BATCH - 60  # the import spans two reads
    changes = [
        *deletes("pad", padding, now),
        *imported,
        stamped(upsert({**items[65], "title": "Lamp 65 v2"}, vectors[65]), now + 500),
        stamped(upsert({**items[66], "title": "Lamp 66 older"}, vectors[66]), now - 1),
        stamped({"op": "delete", "item_id": "rp-067"}, now + 500),  # upserted in this read
        stamped(upsert({**items[67], "title": "Lamp 67 back"}, vectors[67]), now + 501),
        stamped({"op": "delete", "item_id": "ty-001"}, now + 500),  # of the items file
        {"op": "upsert", "item": {"item_id": "rp-u", "title": "Unstamped a", **ITEM}},
        {"op": "upsert", "item": {"item_id": "rp-u", "title": "Unstamped b", **ITEM}},
        {**imported[10], "id": secrets.token_hex(8)},  # republished after a loss: applied already
    ]
    redis_client.rpush(key, *[json.dumps(change) for change in changes])

    before = count_rebuilds()
    catalog_sync(reader).sync(force=True)
    assert count_rebuilds() - before == 3  # a read, then a read split by rp-067's delete

    one_by_one_prefix = f"{redis_prefix}one-by-one:"
    one_by_one = make_app(redis_url=redis_url, redis_prefix=one_by_one_prefix, **SETTINGS)
    for change in changes:
        redis_client.rpush(f"{one_by_one_prefix}catalog:changes", json.dumps(change))
        catalog_sync(one_by_one).sync(force=True)
    assert catalog_state(reader) == catalog_state(one_by_one)
    worker = reader.test_client()
    assert worker.get("/api/items/rp-065").json["title"] == "Lamp 65 v2"
    assert worker.get("/api/items/rp-066").json["title"] == "Replayed Lamp 66"
    assert worker.get("/api/items/rp-067").json["title"] == "Lamp 67 back"
    assert worker.get("/api/items/rp-u").json["title"] == "Unstamped b"
    assert worker.get("/api/items/ty-001").status_code == 404
    assert worker.get("/api/items/rp-119").status_code == 200
    assert catalog_sync(reader).applied_changes == len(changes)


def test_a_new_worker_replays_a_long_log_in_bounded_reads(
    make_app, redis_url, redis_prefix, redis_client
):
    """The whole log from a position came back in one LRANGE: after a large import (~250 MB)
    that read timed out under the 0.25 s socket timeout, at every retry again, and a new worker
    never caught up. Now each read is at most CHANGE_READ_BATCH changes: a new worker reads the
    whole log before it serves, a running one a read per request."""
    from threefold.apps.recs.redis_state import CHANGE_READ_BATCH

    key = f"{redis_prefix}catalog:changes"
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, **SETTINGS}
    running = make_app(**settings)
    now = time.time() - 600
    last = {"op": "upsert", "item": {"item_id": "bl-1", "title": "Long Log Lamp", **ITEM}}
    changes = [*deletes("bl", 2 * CHANGE_READ_BATCH + 300, now), stamped(last, now + 1)]
    redis_client.rpush(key, *[json.dumps(change) for change in changes])

    with log_reads(redis_client, key) as reads:
        started = make_app(**settings)
    assert reads == [
        (n, n + CHANGE_READ_BATCH - 1) for n in range(0, len(changes), CHANGE_READ_BATCH)
    ]
    assert catalog_sync(started).applied_changes == len(changes)
    assert started.test_client().get("/api/items/bl-1").json["title"] == "Long Log Lamp"

    worker = running.test_client()
    with log_reads(redis_client, key) as reads:
        for _ in range(math.ceil(len(changes) / CHANGE_READ_BATCH)):
            worker.get("/api/items/ty-002")
    assert len(reads) == 3 and all(stop - start < CHANGE_READ_BATCH for start, stop in reads)
    assert worker.get("/api/items/bl-1").json["title"] == "Long Log Lamp"
    assert catalog_sync(running).version == catalog_sync(started).version


def test_a_lost_log_refilled_past_one_read_is_replayed_before_anything_is_republished(
    admin_headers, make_app, redis_url, redis_prefix, redis_client
):
    """Redis lost the log, then other workers logged more than one read of changes: the worker
    that held edits replays the new log over several requests, and once it read all of it
    republishes each of its edits the log lacks, once, and none it holds."""
    from threefold.apps.recs.redis_state import CHANGE_READ_BATCH

    key = f"{redis_prefix}catalog:changes"
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, **SETTINGS}
    app = make_app(**settings)
    worker = app.test_client()
    kept = {"item_id": "rl-kept", "title": "Kept Lamp", **ITEM}
    relogged = {"item_id": "rl-relogged", "title": "Relogged Lamp", **ITEM}
    for item in (kept, relogged):
        assert worker.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert worker.delete("/api/items/ty-002", headers=admin_headers).status_code == 200
    newer = {**relogged, "title": "Relogged Lamp v2"}
    redis_client.delete(key)  # lost; others log more than a read, the last an edit made later
    refill = [
        *deletes("rl", CHANGE_READ_BATCH + 200, time.time() - 600),
        stamped({"op": "upsert", "item": newer}, time.time() + 60),
    ]
    redis_client.rpush(key, *[json.dumps(change) for change in refill])

    worker.get("/api/items/rl-kept")  # notices the loss, reads the first CHANGE_READ_BATCH
    assert redis_client.llen(key) == len(refill)  # nothing republished before the whole replay
    worker.get("/api/items/rl-kept")  # reads the rest: republishes
    assert catalog_sync(app).wait_for_publishing(timeout=60)
    republished = [json.loads(entry) for entry in redis_client.lrange(key, len(refill), -1)]
    assert sorted(
        (change["op"], change.get("item_id") or change["item"]["item_id"]) for change in republished
    ) == [("delete", "ty-002"), ("upsert", "rl-kept")]
    later = make_app(**settings).test_client()
    for reader in (worker, later):
        assert reader.get("/api/items/rl-kept").status_code == 200
        assert reader.get("/api/items/rl-relogged").json["title"] == "Relogged Lamp v2"
        assert reader.get("/api/items/ty-002").status_code == 404


def test_an_older_logged_edit_cannot_land_between_an_edit_and_its_stamp(
    admin_headers, make_app, redis_url, redis_prefix, redis_client, monkeypatch
):
    """An admin edit was applied, then stamped: a sync between the two applied another worker's
    older edit of the item over it, and the worker kept that older content under the newer
    stamp (skipped as already applied when read back). Now the sync waits for the stamp."""
    import threading

    key = f"{redis_prefix}catalog:changes"
    app = make_app(redis_url=redis_url, redis_prefix=redis_prefix, **SETTINGS)
    sync = catalog_sync(app)
    older = {"item_id": "rc-1", "title": "Older Race Lamp", **ITEM}
    other_sync = threading.Thread(target=sync.sync, kwargs={"force": True})
    upsert_items = sync.recommender.upsert_items

    def upsert_then_let_a_sync_run(items, *args, **kwargs):
        vectors = upsert_items(items, *args, **kwargs)
        if items[0].title == "Newer Race Lamp":  # another worker's older edit is logged now
            logged = stamped({"op": "upsert", "item": older}, time.time() - 60)
            redis_client.rpush(key, json.dumps(logged))
            other_sync.start()
            other_sync.join(timeout=2)  # before: it applied the older edit here
        return vectors

    monkeypatch.setattr(sync.recommender, "upsert_items", upsert_then_let_a_sync_run)
    newer = {"item_id": "rc-1", "title": "Newer Race Lamp", **ITEM}
    worker = app.test_client()
    assert worker.post("/api/items", json=newer, headers=admin_headers).status_code == 201
    other_sync.join()
    sync.sync(force=True)
    assert worker.get("/api/items/rc-1").json["title"] == "Newer Race Lamp"
    later = make_app(redis_url=redis_url, redis_prefix=redis_prefix, **SETTINGS)
    assert later.test_client().get("/api/items/rc-1").json["title"] == "Newer Race Lamp"


def test_an_upsert_that_fails_to_apply_does_not_fail_the_rest_of_its_read(
    make_app, redis_url, redis_prefix, redis_client, monkeypatch
):
    """The upserts of a read are applied together: one the catalog refuses made the whole read
    fail, at every sync again. Now the read is applied one by one then, the refused one skipped."""
    key = f"{redis_prefix}catalog:changes"
    app = make_app(redis_url=redis_url, redis_prefix=redis_prefix, **SETTINGS)
    sync = catalog_sync(app)
    upsert_items = sync.recommender.upsert_items

    def refusing(items, *args, **kwargs):
        if any(item.item_id == "rf-bad" for item in items):
            raise ValueError("refused for the test")
        return upsert_items(items, *args, **kwargs)

    monkeypatch.setattr(sync.recommender, "upsert_items", refusing)
    changes = [
        stamped({"op": "upsert", "item": {"item_id": item_id, "title": title, **ITEM}}, time.time())
        for item_id, title in (("rf-good", "Good Lamp"), ("rf-bad", "Bad Lamp"))
    ]
    redis_client.rpush(key, *[json.dumps(change) for change in changes])
    sync.sync(force=True)
    worker = app.test_client()
    assert worker.get("/api/items/rf-good").json["title"] == "Good Lamp"
    assert worker.get("/api/items/rf-bad").status_code == 404
    assert sync.applied_changes == len(changes)
