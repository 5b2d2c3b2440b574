"""Every accepted event reaches Redis at most once, on a real redis-server: a write Redis carried
out after the worker's timeout (the worker spooled it) and a spool replayed twice store nothing
twice, in a user's history or in the event log every worker counts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event, with_accept_ids
from threefold.apps.recs.history import UserHistories
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import APPEND_BATCH, WRITE_GUARD_SECONDS, RedisState
from threefold.apps.recs.web.shared import EXTENSION
from threefold.streaming.connections import RedisSettings
from threefold.streaming.services import RedisService

pytestmark = pytest.mark.integration
USER = "slow-redis-shopper"
LOG_KEY = "events-log"


def wait_until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def state(url: str, prefix: str, **options) -> RedisState:
    return RedisState(
        RedisSettings(url=url), prefix=prefix, metrics=RecsMetrics(CollectorRegistry()), **options
    )


def stored(client: redis.Redis, prefix: str, user: str) -> tuple[list[str], list[str]]:
    """(the user's history, the shared log) as item ids, oldest first."""
    history = [
        Event.from_dict(json.loads(raw)) for raw in client.lrange(f"{prefix}history:{user}", 0, -1)
    ]
    log = [
        Event.from_dict(json.loads(fields[b"event"]))
        for _, fields in client.xrange(f"{prefix}{LOG_KEY}")
    ]
    return [e.item_id for e in history], [e.item_id for e in log if e.user_id == user]


@contextmanager
def frozen_at_the_write(app, service: RedisService) -> Iterator[None]:
    """Inside the block, redis-server stops (SIGSTOP) just before the app's next event write:
    the write waits in the server's socket, the app times out; Redis carries it out after."""
    redis_state = app.extensions[EXTENSION].redis
    write = redis_state.append_events

    def freeze_then_write(events):
        os.kill(service.pid, signal.SIGSTOP)
        return write(events)

    redis_state.append_events = freeze_then_write
    try:
        yield
    finally:
        del redis_state.append_events
        os.kill(service.pid, signal.SIGCONT)


def test_a_write_redis_carried_out_after_the_timeout_is_not_stored_again_by_the_replay(
    make_app, hung_redis, redis_prefix: str
) -> None:
    """Redis frozen while the worker writes: the write waits in the socket, the worker times out
    and spools the events, then Redis wakes up and carries the write out. The spool's replay
    stored every event a second time (history, the shared log that every worker counts)."""
    settings = {
        "redis_url": hung_redis.url,
        "redis_prefix": redis_prefix,
        "redis_retry_seconds": 0.2,
        "stats_refresh_seconds": 0,
    }
    app_a, app_b = make_app(**settings), make_app(**settings)
    a, b = app_a.test_client(), app_b.test_client()
    seed = len(app_a.extensions[EXTENSION].recommender.events())
    bought = [
        {"user_id": USER, "item_id": "od-001", "event": "purchase"},
        {"user_id": USER, "item_id": "el-001", "event": "purchase", "event_id": "slow-1"},
    ]
    direct = redis.Redis.from_url(hung_redis.url)
    warm_up = {"user_id": "early-shopper", "item_id": "od-001"}  # a worker that has written
    assert a.post("/api/events", json=warm_up).json["shared"] is True
    with frozen_at_the_write(app_a, hung_redis):
        posted = a.post("/api/events", json={"events": bought})
        assert posted.status_code == 202 and posted.json["shared"] is False  # spooled
    # Redis now carries out the write that was waiting in its socket
    wait_until(lambda: stored(direct, redis_prefix, USER)[1], "the late write")
    time.sleep(0.3)  # the breaker lets Redis be tried again
    assert a.get(f"/api/recommendations?user_id={USER}&k=4").status_code == 200  # replays
    assert not app_a.extensions[EXTENSION].histories.spool.pending()

    history, log = stored(direct, redis_prefix, USER)
    assert history == ["od-001", "el-001"], "each purchase once in the user's history"
    assert log == ["od-001", "el-001"], "each purchase once in the shared log"
    assert direct.smembers(f"{redis_prefix}purchased:{USER}") == {b"od-001", b"el-001"}
    shown = a.get(f"/api/recommendations?user_id={USER}&k=4").json
    assert shown["cold_start"] is False
    for app in (app_a, app_b):  # popularity, trending and co-occurrence count each once
        app.extensions[EXTENSION].shared_events.sync(force=True)
        assert len(app.extensions[EXTENSION].recommender.events()) == seed + 3  # + warm-up
    assert b.get(f"/api/recommendations?user_id={USER}&k=4").status_code == 200


def accepted_while_down(spool_dir: Path, events: list[Event]) -> None:
    """A worker with Redis unreachable accepts `events`: they go to the spool."""
    down = state("redis://127.0.0.1:1/0", "unused:")
    histories = UserHistories([], down, spool=EventSpool(spool_dir))
    assert histories.record(events) is False


def test_a_spooled_batch_replayed_twice_is_stored_once(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client
) -> None:
    """A worker that dies after Redis took the replayed records but before it emptied the spool
    leaves them there for the next replay (streaming.record_spool): they were stored again."""
    events = [Event(USER, f"it-{n}", "purchase", 1_700_000_000.0 + n) for n in range(3)]
    accepted_while_down(tmp_path, events)
    spool_file = EventSpool(tmp_path).path
    spooled = spool_file.read_bytes()
    histories = UserHistories([], state(redis_url, redis_prefix), spool=EventSpool(tmp_path))
    assert histories.replay_spool()
    spool_file.write_bytes(spooled)  # the same batch is still there for the next replay
    assert histories.replay_spool()
    assert not histories.spool.pending()

    history, log = stored(redis_client, redis_prefix, USER)
    assert history == log == ["it-0", "it-1", "it-2"]
    assert [e.item_id for e in histories.get(USER)] == ["it-0", "it-1", "it-2"]
    [first_id, *_] = [json.loads(line)["accept_id"] for line in spooled.decode().splitlines()]
    guard_ttl = redis_client.ttl(f"{redis_prefix}event-written:s:{first_id}")
    assert 0 < guard_ttl <= WRITE_GUARD_SECONDS


def test_a_client_retry_stored_by_another_worker_is_not_stored_again_from_the_spool(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client
) -> None:
    """Worker A accepted event e-1 while it could not reach Redis (spooled, its id claimed only
    in A's memory); the client's retry reached worker B, which stored it."""
    bought = Event(USER, "od-001", "purchase", 1_700_000_000.0, event_id="e-1")
    accepted_while_down(tmp_path, [bought])
    worker_b = UserHistories([], state(redis_url, redis_prefix), spool=EventSpool(tmp_path / "b"))
    assert worker_b.record([replace(bought, timestamp=1_700_000_005.0)])
    worker_a = UserHistories([], state(redis_url, redis_prefix), spool=EventSpool(tmp_path))
    assert worker_a.replay_spool()
    history, log = stored(redis_client, redis_prefix, USER)
    assert history == log == ["od-001"]


def test_events_spooled_by_the_previous_version_replay_and_are_stored_once(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client
) -> None:
    """Records spooled before events had ids (no accept_id) are stored like new ones; two
    identical ones are two events; replaying them again stores nothing twice."""
    old_format = [
        {"user_id": USER, "item_id": "od-001", "event": "view", "timestamp": 1_700_000_000.0},
        {"user_id": USER, "item_id": "od-001", "event": "view", "timestamp": 1_700_000_000.0},
        {"user_id": USER, "item_id": "el-001", "event": "purchase", "timestamp": 1_700_000_001.0},
    ]
    spool = EventSpool(tmp_path)
    spooled = "".join(json.dumps(record) + "\n" for record in old_format)
    spool.path.write_text(spooled)
    histories = UserHistories([], state(redis_url, redis_prefix), spool=spool)
    for _ in range(2):
        spool.path.write_text(spooled)
        assert histories.replay_spool()
    history, log = stored(redis_client, redis_prefix, USER)
    assert history == log == ["od-001", "od-001", "el-001"]
    assert redis_client.smembers(f"{redis_prefix}purchased:{USER}") == {b"el-001"}


def test_a_long_spool_replays_in_order_one_round_trip_per_batch(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client
) -> None:
    events = [
        Event(f"user-{n % 7}", f"it-{n}", "view", 1_700_000_000.0 + n)
        for n in range(2 * APPEND_BATCH + 1)
    ]
    accepted_while_down(tmp_path, events)
    redis_state = state(redis_url, redis_prefix, history_limit=100)
    histories = UserHistories([], redis_state, spool=EventSpool(tmp_path))
    warm_up = with_accept_ids([Event("warm-up", "it-0", "view", 1_600_000_000.0)])
    assert redis_state.append_events(warm_up)  # the script is loaded
    calls_before = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert histories.replay_spool()
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] - calls_before == 3
    logged = [
        json.loads(fields[b"event"])["item_id"]
        for _, fields in redis_client.xrange(f"{redis_prefix}{LOG_KEY}")
    ]
    assert logged == ["it-0", *(e.item_id for e in events)]
    history, _ = stored(redis_client, redis_prefix, "user-3")
    assert history == [e.item_id for e in events if e.user_id == "user-3"][-100:]  # capped


def test_a_key_of_the_wrong_type_fails_the_batch_before_anything_is_written(
    redis_url: str, redis_prefix: str, redis_client
) -> None:
    """A half-written batch would leave guards set on events whose writes never happened."""
    events = with_accept_ids(
        [Event(user, "it-1", "purchase", 1_700_000_000.0) for user in ("fine", "clash")]
    )
    redis_client.set(f"{redis_prefix}purchased:clash", "not a set")
    redis_state = state(redis_url, redis_prefix)
    assert redis_state.append_events(events) is False
    assert redis_client.xlen(f"{redis_prefix}{LOG_KEY}") == 0
    assert not redis_client.exists(f"{redis_prefix}history:fine")
    assert redis_state.available  # a data error does not open the breaker
    redis_client.delete(f"{redis_prefix}purchased:clash")
    assert redis_state.append_events(events) is True
    assert redis_client.xlen(f"{redis_prefix}{LOG_KEY}") == 2


def test_an_event_without_an_id_is_refused_before_redis_is_called(
    redis_url: str, redis_prefix: str, redis_client
) -> None:
    with pytest.raises(ValueError, match=r"neither an event_id nor an accept_id.*with_accept_ids"):
        state(redis_url, redis_prefix).append_events([Event("u", "it-1", "view", 1.0)])
    assert redis_client.xlen(f"{redis_prefix}{LOG_KEY}") == 0
