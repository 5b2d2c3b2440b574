"""Spooled impressions on a real redis-server: one Redis refuses on its data does not hold up
the others, and an impression whose write Redis carried out after the worker's timeout is not
counted again when the spool replays it."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from threefold.apps.recs.ab_buckets import CONTROL
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.event_spool import REJECTED_MAX_BYTES, EventSpool
from threefold.apps.recs.impressions import REFUSED_REASON, Impression, ImpressionLog
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_impressions import RedisImpressionStore
from threefold.apps.recs.redis_state import RedisState
from threefold.apps.recs.resources import IMPRESSION_SPOOL, open_spool
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration


def impression_log(
    url: str, prefix: str, spool_dir: Path, registry: CollectorRegistry | None = None, **options
) -> ImpressionLog:
    metrics = RecsMetrics(registry or CollectorRegistry())
    state = RedisState(RedisSettings(url=url), prefix=prefix, metrics=metrics, **options)
    spool = EventSpool(spool_dir, file_name="impressions.jsonl", record_type=Impression)
    return ImpressionLog(
        RedisImpressionStore(state), state.metrics, spool, takes_writes=state.takes_writes
    )


def shown(list_id: str, version: str = "v1") -> Impression:
    return Impression(list_id, "u1", version, ("a", "b"), timestamp=1.0)


def test_an_impression_redis_refuses_is_set_aside_and_the_others_are_counted_once(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client, caplog
) -> None:
    """Another tool left a string at the counts key of version `vbad`: every add of a `vbad`
    list fails. Before, the replay kept the whole spool for ever (no later impression was
    counted), and each retry of the pipeline counted the lists it did take again."""
    redis_client.set(f"{redis_prefix}impressions:counts:vbad", "not a hash")
    registry = CollectorRegistry()
    log = impression_log(redis_url, redis_prefix, tmp_path, registry)
    log.spool.append([shown("l1"), shown("l2", "vbad"), shown("l3"), shown("l4")])
    with caplog.at_level(logging.ERROR, logger="threefold.streaming.record_spool"):
        assert log.replay_spool()
    assert log.readout()["v1"]["lists"] == 3 and log.readout()["v1"]["shown"] == 6
    assert "vbad" not in log.readout()
    assert redis_client.xlen(f"{redis_prefix}impressions:log") == 3
    [rejected] = [json.loads(line) for line in log.spool.rejected_path.read_text().splitlines()]
    assert rejected["record"]["list_id"] == "l2" and rejected["reason"] == REFUSED_REASON
    assert "redis refused 1 Impression record(s) of spool impressions.jsonl" in caplog.text
    rejected_total = registry.get_sample_value(
        "recs_spool_records_rejected_total", {"kind": "impression"}
    )
    assert rejected_total == 1


def test_an_impression_redis_stored_after_the_timeout_is_not_counted_again(
    tmp_path: Path, hung_redis, redis_prefix: str
) -> None:
    """Redis frozen while the worker adds a list: the add times out and the impression is
    spooled; Redis carries the add out once thawed, and the replay then adds it again."""
    log = impression_log(hung_redis.url, redis_prefix, tmp_path, retry_seconds=0.2)
    direct = redis.Redis.from_url(hung_redis.url)
    record = f"{redis_prefix}impressions:list:slow"
    log.record(shown("early"))  # a worker that has written (its script is loaded)
    add = log.store.add

    def freeze_then_add(impressions):
        os.kill(hung_redis.pid, signal.SIGSTOP)
        return add(impressions)

    log.store.add = freeze_then_add
    try:
        log.record(shown("slow"))  # times out: spooled
    finally:
        log.store.add = add
        os.kill(hung_redis.pid, signal.SIGCONT)
    assert log.spool.pending()
    deadline = time.monotonic() + 10
    while not direct.exists(record):  # the late write
        assert time.monotonic() < deadline, "the add never reached Redis"
        time.sleep(0.02)
    time.sleep(0.3)  # the breaker lets Redis be tried again
    assert log.replay_spool()
    assert log.readout()["v1"]["lists"] == 2 and log.readout()["v1"]["shown"] == 4
    assert direct.xlen(f"{redis_prefix}impressions:log") == 2
    assert log.ab_counts() == {CONTROL: {"v1": {"lists": 2, "shown": 4}}}


def test_a_full_rejected_file_drops_further_refused_records_and_counts_them(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client
) -> None:
    """The `.rejected` file is bounded (REJECTED_MAX_BYTES): past it a refused record is
    dropped and counted in /metrics, never left to fill the disk; the others are stored."""
    redis_client.set(f"{redis_prefix}impressions:counts:vbad", "not a hash")
    registry = CollectorRegistry()
    metrics = RecsMetrics(registry)
    state = RedisState(RedisSettings(url=redis_url), prefix=redis_prefix, metrics=metrics)
    spool = open_spool(
        RecsConfig(spool_dir=tmp_path), state, "impressions", IMPRESSION_SPOOL, Impression
    )
    log = ImpressionLog(
        RedisImpressionStore(state), metrics, spool, takes_writes=state.takes_writes
    )
    with spool.rejected_path.open("wb") as full:
        full.truncate(REJECTED_MAX_BYTES)
    spool.append([shown("l1"), shown("l2", "vbad"), shown("l3")])
    assert log.replay_spool()
    assert log.readout()["v1"]["lists"] == 2
    assert spool.rejected_path.stat().st_size == REJECTED_MAX_BYTES
    lost = registry.get_sample_value(
        "recs_spool_records_rejected_lost_total", {"kind": "Impression"}
    )
    assert lost == 1
