"""Every worker counts the seed log plus the newest `shared_events_max` entries of the shared
event stream, by stream order: a worker started after the stream was trimmed counts what the
long-running ones count, and no worker's event log grows past seed + cap."""

from __future__ import annotations

import json
import time

import pytest
import redis
from prometheus_client import CollectorRegistry
from support.services import frozen

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event, with_accept_ids
from threefold.apps.recs.history import UserHistories
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import RedisState
from threefold.apps.recs.shared_events import SharedEvents
from threefold.apps.recs.web.shared import EXTENSION
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration
CAP = 40
NEWCOMER = "newcomer"


def counted(app) -> list[Event]:
    return app.extensions[EXTENSION].recommender.events()


def stream_tail(client: redis.Redis, prefix: str, newest: int) -> list[Event]:
    entries = client.xrevrange(f"{prefix}events-log", count=newest)
    return [Event.from_dict(json.loads(fields[b"event"])) for _, fields in reversed(entries)]


def fresh_list(app, client: redis.Redis, prefix: str, user: str) -> list[str]:
    client.delete(f"{prefix}recs:{user}")  # not the list another worker cached
    response = app.test_client().get(f"/api/recommendations?user_id={user}&k=10")
    assert response.status_code == 200 and response.json["cached"] is False, response.json
    return [item["item_id"] for item in response.json["items"]]


def test_workers_started_before_and_after_the_stream_was_trimmed_count_the_same_window(
    make_app, redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    settings = {
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "stats_refresh_seconds": 0,
        "shared_events_max": CAP,
    }
    app_a, app_b = make_app(**settings), make_app(**settings)
    seed = counted(app_a)
    items = [item.item_id for item in app_a.extensions[EXTENSION].recommender.catalog]
    for batch in range(8):  # 240 events: each batch makes another item popular
        posted_to = (app_a, app_b)[batch % 2]
        events = [
            {"user_id": f"buyer-{batch}-{n}", "item_id": items[batch * 3], "event": "purchase"}
            for n in range(30)
        ]
        response = posted_to.test_client().post("/api/events", json={"events": events})
        assert response.status_code == 202 and response.json["shared"] is True
        for app in (app_a, app_b):
            app.extensions[EXTENSION].shared_events.sync(force=True)
            assert len(counted(app)) <= len(seed) + CAP, "memory bounded by seed + cap"
    # MAXLEN ~ trims whole stream nodes: the stream keeps at least CAP, here more
    assert redis_client.xlen(f"{redis_prefix}events-log") > CAP

    app_c = make_app(**settings)  # started after the trimming (a restart, a new replica)
    newest = stream_tail(redis_client, redis_prefix, CAP)
    for app in (app_a, app_b, app_c):
        app.extensions[EXTENSION].shared_events.sync(force=True)
        assert counted(app) == [*seed, *newest], "the seed log + the newest CAP, stream order"
    for user in (NEWCOMER, "u003"):
        lists = [fresh_list(app, redis_client, redis_prefix, user) for app in (app_a, app_b, app_c)]
        assert lists[0] == lists[1] == lists[2]
    metrics = app_c.test_client().get("/metrics").text
    assert f"recs_shared_events_counted {float(CAP)}" in metrics


def test_events_counted_during_an_outage_take_their_stream_place_once_replayed(
    make_app, hung_redis, redis_prefix: str
) -> None:
    """Worker a counts the events it spooled at once; the stream brings them after b's (a
    replays its spool later). Once read back they sit where the stream has them, so a and b
    count the same newest `cap` events in the same order, and the window drops the same ones."""
    cap = 8
    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "stats_refresh_seconds": 0,
        "redis_retry_seconds": 1.0,
        "shared_events_max": cap,
    }
    app_a, app_b = make_app(**settings), make_app(**settings)
    a, b = app_a.test_client(), app_b.test_client()
    seed = counted(app_a)

    def post(client, user: str, items: list[str]) -> bool:
        events = [{"user_id": user, "item_id": item, "event": "view"} for item in items]
        response = client.post("/api/events", json={"events": events})
        assert response.status_code == 202, response.json
        return response.json["shared"]

    with frozen(hung_redis):  # a's write times out (Redis carries it out once thawed)
        assert post(a, "outage", ["bk-001"]) is False
    # a's breaker is open: these wait in a's spool without a call to Redis
    assert post(a, "outage", ["bk-002", "bk-003", "bk-004", "bk-005", "bk-006"]) is False
    assert post(b, "meanwhile", ["od-001", "od-002", "od-003", "od-004"]) is True
    time.sleep(1.1)  # a's breaker lets Redis be tried again
    assert post(a, "after", ["el-001"]) is True  # replays a's spool first
    assert post(b, "later", ["od-005", "od-006", "od-007"]) is True
    app_a.extensions[EXTENSION].shared_events.sync(force=True)
    app_b.extensions[EXTENSION].shared_events.sync(force=True)
    direct = redis.Redis.from_url(hung_redis.url)
    newest = stream_tail(direct, redis_prefix, cap)
    assert counted(app_a) == counted(app_b) == [*seed, *newest]
    assert direct.xlen(f"{redis_prefix}events-log") == 14, "each event once in the stream"


def test_without_redis_a_worker_counts_the_newest_shared_events_max_of_its_posts(
    make_app,
) -> None:
    app = make_app(redis_url=None, shared_events_max=5)
    seed = counted(app)
    events = [{"user_id": f"u-{n}", "item_id": "bk-001", "timestamp": n} for n in range(12)]
    response = app.test_client().post("/api/events", json={"events": events})
    assert response.status_code == 202 and response.json["shared"] is False
    assert [e.user_id for e in counted(app)[len(seed) :]] == [f"u-{n}" for n in range(7, 12)]


def test_a_spooled_event_redis_refuses_is_no_longer_counted_by_the_worker_that_counted_it(
    tmp_path, redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """It never reaches the stream, so no other worker counts it: neither does this one."""
    state = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(CollectorRegistry())
    )
    shared = SharedEvents(state, state.metrics)
    histories = UserHistories([], state, spool=EventSpool(tmp_path), on_refused=shared.uncount)
    events = with_accept_ids([Event(user, "bk-001", "view", 1.0) for user in ("u1", "u2")])
    EventSpool(tmp_path).append(events)  # accepted while Redis was away ...
    shared.counted(events, shared=False)  # ... and counted here at once
    redis_client.set(f"{redis_prefix}history:u2", "not a list")
    assert histories.replay_spool()  # u2's event set aside, u1's stored
    shared.sync(force=True)
    assert [e.user_id for e in shared.posted()] == ["u1"]
