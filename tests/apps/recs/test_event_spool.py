"""The on-disk spool of events Redis could not take."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path

import pytest
import redis as redis_lib
from prometheus_client import CollectorRegistry
from support.services import frozen

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event, with_accept_ids
from threefold.apps.recs.history import REFUSED_REASON, UserHistories
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import APPEND_EVENTS_SCRIPT, RedisState
from threefold.streaming.connections import RedisSettings
from threefold.streaming.record_spool import spool_file_name

EVENTS = [Event("u1", f"i{n}", "purchase", 1_700_000_000.0 + n) for n in range(3)]


def test_spooled_events_survive_a_new_process_and_replay_in_order(tmp_path: Path) -> None:
    EventSpool(tmp_path).append(EVENTS[:2])
    EventSpool(tmp_path).append(EVENTS[2:])
    spool = EventSpool(tmp_path)  # e.g. a restarted worker
    assert spool.pending()
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 3
    assert pushed == [EVENTS]
    assert not spool.pending()


def test_a_failed_replay_keeps_every_event(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append(EVENTS)
    assert spool.replay(lambda events: False) == 0
    assert spool.pending()
    assert spool.replay(lambda events: True) == 3


def test_a_torn_line_is_set_aside_and_the_rest_replays(tmp_path: Path) -> None:
    """A worker killed mid-write (or a disk that filled up) leaves half a line: it must not
    block every later replay, nor fail the requests that trigger one."""
    spool = EventSpool(tmp_path)
    spool.append(EVENTS[:2])
    with spool.path.open("a", encoding="utf-8") as handle:
        handle.write('{"user_id": "u1", "item_id": "i9", "ev')  # no end: the crash
    spool.append(EVENTS[2:])
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 3
    assert pushed == [EVENTS]
    assert not spool.pending()
    rejected = spool.path.with_name(spool.path.name + ".rejected")
    assert '"item_id": "i9"' in rejected.read_text(encoding="utf-8")


def test_a_write_the_disk_refuses_leaves_no_partial_line(tmp_path: Path, monkeypatch) -> None:
    spool = EventSpool(tmp_path)
    spool.append(EVENTS[:1])
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", full)
        return real_write(fd, data[: len(data) // 2])

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        spool.append(EVENTS[1:])
    monkeypatch.setattr(os, "write", real_write)
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 1
    assert pushed == [EVENTS[:1]]


@pytest.mark.integration
def test_an_event_redis_refuses_is_set_aside_and_the_others_are_stored(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client, caplog
) -> None:
    """Another app left a string at `<prefix>history:u2`: the append script refuses any batch
    with u2's event, whatever the retry. That event goes to `events.jsonl.rejected` (logged,
    counted); the events before and after it are stored, in order. Before, the replay kept the
    whole spool and no event of it ever reached Redis."""
    redis_client.set(f"{redis_prefix}history:u2", "not a list")
    events = with_accept_ids(
        [Event(f"u{user}", f"i{n}", "view", 1_700_000_000.0 + n) for n, user in enumerate("1213")]
    )
    EventSpool(tmp_path).append(events)
    registry = CollectorRegistry()
    redis = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(registry)
    )
    histories = UserHistories([], redis, spool=EventSpool(tmp_path))
    with caplog.at_level(logging.ERROR, logger="threefold.streaming.record_spool"):
        assert histories.replay_spool()
    assert [e.item_id for e in histories.get("u1")] == ["i0", "i2"]
    assert [e.item_id for e in histories.get("u3")] == ["i3"]
    logged = [
        json.loads(f[b"event"])["item_id"]
        for _, f in redis_client.xrange(f"{redis_prefix}events-log")
    ]
    assert logged == ["i0", "i2", "i3"]
    spool = EventSpool(tmp_path)
    [rejected] = [json.loads(line) for line in spool.rejected_path.read_text().splitlines()]
    assert rejected["record"]["item_id"] == "i1" and rejected["reason"] == REFUSED_REASON
    assert "redis refused 1 Event record(s) of spool events.jsonl" in caplog.text
    assert registry.get_sample_value("recs_spool_records_rejected_total", {"kind": "event"}) == 1
    assert redis_client.get(f"{redis_prefix}history:u2") == b"not a list"


@pytest.mark.integration
def test_events_wait_in_the_spool_while_redis_refuses_every_write(
    tmp_path: Path, hung_redis, redis_prefix: str
) -> None:
    """A Redis out of memory (or a read-only replica after a failover) answers pings but
    refuses every write: that is no fault of the events, none is set aside."""
    client = redis_lib.Redis.from_url(hung_redis.url)
    events = with_accept_ids([Event("u1", f"i{n}", "view", 1_700_000_000.0 + n) for n in range(3)])
    EventSpool(tmp_path).append(events)
    redis = RedisState(
        RedisSettings(url=hung_redis.url),
        prefix=redis_prefix,
        metrics=RecsMetrics(CollectorRegistry()),
    )
    histories = UserHistories([], redis, spool=EventSpool(tmp_path))
    try:
        client.config_set("maxmemory", 1)
        assert not histories.replay_spool()
        assert EventSpool(tmp_path).count() == 3
        assert not EventSpool(tmp_path).rejected_path.exists()
        client.config_set("maxmemory", 0)
        assert histories.replay_spool()
        assert [e.item_id for e in histories.get("u1")] == ["i0", "i1", "i2"]
    finally:
        client.config_set("maxmemory", 0)
        client.close()


def script_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


@pytest.mark.integration
def test_a_shared_log_key_of_another_type_keeps_every_event_spooled_without_a_search(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client, caplog
) -> None:
    """Another tool left a string at `<prefix>events-log`: every append fails, whatever the
    event. Before, the replay pushed halves of the spool down to single events (2n - 1 script
    calls, each failure followed by a ping and a probe SET, all under the spool lock every
    request takes) and set every event aside in `.rejected`, also each one posted afterwards.
    Now one failed append and a TYPE tell it: every event waits in the spool (logged once,
    gauged) and is stored once the key is gone."""
    log_key = f"{redis_prefix}events-log"
    redis_client.set(log_key, "something else")
    events = with_accept_ids(
        [Event(f"u{n % 5}", f"i{n}", "view", 1_700_000_000.0 + n) for n in range(64)]
    )
    EventSpool(tmp_path).append(events)
    registry = CollectorRegistry()
    redis = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(registry)
    )
    histories = UserHistories([], redis, spool=EventSpool(tmp_path))
    redis_client.script_load(APPEND_EVENTS_SCRIPT)  # no NOSCRIPT round trip to count
    before = script_calls(redis_client)
    with caplog.at_level(logging.ERROR, logger="threefold.apps.recs"):
        assert not histories.replay_spool()
        later = with_accept_ids([Event("u1", "i99", "view", 1_700_000_100.0)])
        assert histories.record(later) is False  # spooled, not set aside
        assert not histories.replay_spool()
    assert script_calls(redis_client) - before == 3, "one append per replay, no search"
    spool = EventSpool(tmp_path)
    assert spool.count() == 65 and not spool.rejected_path.exists()
    [logged] = [
        r
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "shared_log_wrong_type"
    ]
    assert f"redis holds a string at {log_key}" in logged.getMessage()
    assert registry.get_sample_value("recs_shared_log_wrong_type") == 1
    assert registry.get_sample_value("recs_spool_records_rejected_total", {"kind": "event"}) in (
        None,
        0,
    )

    redis_client.delete(log_key)  # the operator's fix
    assert histories.replay_spool()
    assert redis_client.xlen(log_key) == 65
    assert [e.item_id for e in histories.get("u1")][-2:] == ["i61", "i99"]
    assert registry.get_sample_value("recs_shared_log_wrong_type") == 0


def test_spool_files_are_named_by_their_redis_and_prefix_without_the_password() -> None:
    name = spool_file_name("events", "shop:", "redis://app:s3cret@cache-a:6379/0")
    assert name.startswith("events-shop-") and name.endswith(".jsonl")
    assert "s3cret" not in name
    for same_server in ("redis://app:rotated@cache-a:6379/0", "redis://cache-a"):
        assert spool_file_name("events", "shop:", same_server) == name
    others = {
        spool_file_name("events", "shop:", "redis://app:s3cret@cache-b:6379/0"),
        spool_file_name("events", "shop:", "redis://app:s3cret@cache-a:6379/1"),
        spool_file_name("events", "shop-", "redis://app:s3cret@cache-a:6379/0"),
        spool_file_name("impressions", "shop:", "redis://app:s3cret@cache-a:6379/0"),
    }
    assert name not in others and len(others) == 4


def deployment(make_app, url: str, prefix: str, spool_dir: Path):
    return make_app(
        redis_url=url, redis_prefix=prefix, spool_dir=spool_dir, redis_retry_seconds=0.2
    ).test_client()


@pytest.mark.integration
def test_two_deployments_sharing_a_spool_dir_replay_only_their_own_events(
    make_app, hung_redis, redis_url: str, redis_prefix: str, redis_client, tmp_path: Path
) -> None:
    """Two recs deployments on one host, same spool folder, each with its own Redis. Before,
    both spooled to `events.jsonl`: the events one accepted while its Redis was down were
    replayed by the other into the wrong Redis, and never reached their own."""
    away = deployment(make_app, hung_redis.url, redis_prefix, tmp_path)
    up = deployment(make_app, redis_url, redis_prefix, tmp_path)
    view = {"user_id": "away-shopper", "item_id": "bk-002", "event": "view"}
    with frozen(hung_redis):
        assert away.post("/api/events", json=view).json["shared"] is False
    other = {"user_id": "up-shopper", "item_id": "bk-003", "event": "view"}
    assert up.post("/api/events", json=other).json["shared"] is True
    assert not redis_client.exists(f"{redis_prefix}history:away-shopper"), "not its Redis"
    assert redis_client.xlen(f"{redis_prefix}events-log") == 1

    time.sleep(0.3)  # the breaker lets the thawed Redis be tried again
    assert away.post("/api/events", json={**view, "item_id": "bk-004"}).json["shared"] is True
    own = redis_lib.Redis.from_url(hung_redis.url)
    try:
        stored = [
            json.loads(e)["item_id"]
            for e in own.lrange(f"{redis_prefix}history:away-shopper", 0, -1)
        ]
    finally:
        own.close()
    assert stored == ["bk-002", "bk-004"]


@pytest.mark.integration
def test_a_spool_of_an_earlier_version_is_replayed_once(
    make_app, redis_url: str, redis_prefix: str, redis_client, tmp_path: Path
) -> None:
    """Events spooled under the old name (`events.jsonl`, before spools named their Redis)
    are replayed, before newer ones, by the first worker that reaches Redis, and only once."""
    legacy = EventSpool(tmp_path)  # the old file name
    legacy.append(with_accept_ids([Event("old-shopper", "bk-005", "view", 1_700_000_000.0)]))
    client = deployment(make_app, redis_url, redis_prefix, tmp_path)
    view = {"user_id": "old-shopper", "item_id": "bk-006", "event": "view"}
    assert client.post("/api/events", json=view).json["shared"] is True
    log_key = f"{redis_prefix}events-log"
    logged = [json.loads(f[b"event"])["item_id"] for _, f in redis_client.xrange(log_key)]
    assert logged == ["bk-005", "bk-006"]
    assert not legacy.pending()
    again = deployment(make_app, redis_url, redis_prefix, tmp_path)  # a restarted worker
    assert again.post("/api/events", json={**view, "item_id": "bk-007"}).json["shared"] is True
    assert redis_client.xlen(log_key) == 3
