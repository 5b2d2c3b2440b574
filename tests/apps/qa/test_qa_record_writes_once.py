"""Each record kept through a Redis outage reaches Redis once, on a real redis-server: a write
Redis carried out after the client's timeout (Redis stalled longer than the socket timeout: a
fork for a snapshot, a VM pause) is not written again when the record is flushed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from support.services import frozen

from threefold.apps.qa.fallback import (
    FallbackRecordLog,
    KeptRecord,
    RedisFallback,
)
from threefold.apps.qa.feedback import FeedbackStore, MemoryRecordLog
from threefold.apps.qa.metrics import QAMetrics
from threefold.apps.qa.redis_feedback import RedisRecordLog
from threefold.streaming.connections import RedisSettings, redis_client
from threefold.streaming.record_spool import RecordSpool
from threefold.streaming.services import RedisService

pytestmark = pytest.mark.integration
REDIS_TIMEOUT_S = 0.3  # the app's THREEFOLD_QA_REDIS_TIMEOUT_S, shortened


def app_client(url: str) -> Any:
    """A client as the app makes it (`resources.open_resources`), with a short timeout."""
    return redis_client(RedisSettings(url=url), socket_timeout=REDIS_TIMEOUT_S)


def spool_of(directory: Path) -> RecordSpool:
    """A spool of this test's records (its own directory: the app's file name does not matter)."""
    return RecordSpool(directory, file_name="records.jsonl", record_type=KeptRecord)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def turn_ids(client: Any, prefix: str) -> list[str]:
    return [json.loads(raw)["turn_id"] for raw in client.lrange(prefix + "feedback", 0, -1)]


def vote(feedback: FeedbackStore, turn_id: str) -> None:
    feedback.record_feedback(
        session_id="s1", turn_id=turn_id, rating="up", faq_id=None, question="q", answer="a"
    )


class StallsOnce(RedisRecordLog):
    """Redis stalls through the next write (frozen: the client times out), then carries it out."""

    def __init__(self, client: Any, *, prefix: str, service: RedisService) -> None:
        super().__init__(client, prefix=prefix)
        self.service = service
        self.stall_next = False

    def append_many(self, records: Sequence[tuple[str, dict[str, Any], str]]) -> Any:
        if not self.stall_next:
            return super().append_many(records)
        self.stall_next = False
        with frozen(self.service):
            return super().append_many(records)


def redis_goes_down(breaker: RedisFallback) -> None:
    """A request finds Redis unreachable (nothing sent): the breaker opens, records are kept."""

    def refused() -> None:
        raise redis.exceptions.ConnectionError("connection refused")

    breaker.call("append_feedback", refused, lambda: None)


def already_written(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("qa_records_already_written_total", {"kind": kind})


def logged_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if isinstance(getattr(r, "fields", None), dict)]


def test_a_vote_redis_stored_after_the_timeout_is_not_written_again_from_the_spool(
    hung_redis: RedisService, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The vote's append times out while Redis stalls: the breaker opens and the vote is
    spooled. Redis goes on and carries the append out. The flush finds it written: Redis keeps
    one copy (before: two), counted and logged as already written."""
    client = app_client(hung_redis.url)
    registry = CollectorRegistry()
    log = FallbackRecordLog(
        RedisRecordLog(client, prefix=redis_prefix),
        MemoryRecordLog(),
        RedisFallback(retry_s=60),
        spool=spool_of(tmp_path),
    )
    log.on_already_written.append(QAMetrics(registry).observe_records_already_written)
    feedback = FeedbackStore(log)
    try:
        vote(feedback, "warm")  # Redis has the append script
        with frozen(hung_redis):
            vote(feedback, "T2")  # times out: spooled
            assert (log.spooled(), log.in_memory()) == (1, 0)
        wait_until(lambda: turn_ids(client, redis_prefix) == ["warm", "T2"], "the stalled write")
        with caplog.at_level(logging.INFO, logger="threefold.apps.qa"):
            log.flush()
        assert turn_ids(client, redis_prefix) == ["warm", "T2"]
    finally:
        client.close()
    assert log.pending() == 0
    assert already_written(registry, "feedback") == 1
    assert {"event": "qa_records_already_written", "kinds": {"feedback": 1}} in logged_events(
        caplog
    )


def test_spooled_records_redis_stored_after_the_replay_timed_out_are_not_written_again(
    hung_redis: RedisService, redis_prefix: str, tmp_path: Path
) -> None:
    """The replay's push times out while Redis stalls, so the records stay in the spool; Redis
    then carries the push out. The next flush writes none of them again (before: 3 -> 6)."""
    client = app_client(hung_redis.url)
    primary = StallsOnce(client, prefix=redis_prefix, service=hung_redis)
    spool = spool_of(tmp_path)
    registry = CollectorRegistry()
    breaker = RedisFallback(retry_s=60)
    log = FallbackRecordLog(primary, MemoryRecordLog(), breaker, spool=spool)
    log.on_already_written.append(QAMetrics(registry).observe_records_already_written)
    try:
        primary.append("unanswered", {"turn_id": "warm"})  # Redis has the append script
        redis_goes_down(breaker)
        for n in range(3):
            vote(FeedbackStore(log), f"t{n}")
        assert spool.count() == 3
        primary.stall_next = True
        with pytest.raises(redis.exceptions.TimeoutError):
            log.flush()
        assert spool.count() == 3  # not known to be written: kept
        wait_until(lambda: len(turn_ids(client, redis_prefix)) == 3, "the stalled replay")
        assert log.flush() == 3
        assert turn_ids(client, redis_prefix) == ["t0", "t1", "t2"]
    finally:
        client.close()
    assert spool.count() == 0
    assert already_written(registry, "feedback") == 3


def test_a_record_kept_in_memory_redis_stored_after_the_timeout_is_not_written_again(
    hung_redis: RedisService, redis_prefix: str
) -> None:
    """Without a spool (or with one refusing), kept records wait in memory: a flush whose write
    timed out puts them back, and the next flush does not write again what Redis stored."""
    client = app_client(hung_redis.url)
    primary = StallsOnce(client, prefix=redis_prefix, service=hung_redis)
    breaker = RedisFallback(retry_s=60)
    log = FallbackRecordLog(primary, MemoryRecordLog(), breaker)
    try:
        vote(FeedbackStore(log), "warm")
        redis_goes_down(breaker)
        vote(FeedbackStore(log), "T2")
        assert log.in_memory() == 1
        primary.stall_next = True
        with pytest.raises(redis.exceptions.TimeoutError):
            log.flush()
        assert log.in_memory() == 1
        wait_until(lambda: turn_ids(client, redis_prefix) == ["warm", "T2"], "the stalled write")
        assert log.flush() == 1
        assert turn_ids(client, redis_prefix) == ["warm", "T2"]
    finally:
        client.close()
    assert log.pending() == 0


def test_records_an_earlier_version_spooled_without_an_id_are_written_once(
    redis_client: Any, redis_prefix: str, tmp_path: Path
) -> None:
    """Lines spooled before records had ids replay as new records; a worker killed after Redis
    took them and before the spool was emptied leaves them to the next one, which finds them
    written (each gets the same id from its place and content at every replay)."""
    old_lines = "".join(
        json.dumps({"log": "feedback", "record": {"turn_id": f"old{n}"}}) + "\n" for n in (1, 2)
    )
    spool = spool_of(tmp_path)
    spool.path.parent.mkdir(parents=True, exist_ok=True)
    spool.path.write_text(old_lines, encoding="utf-8")
    log = FallbackRecordLog(
        RedisRecordLog(redis_client, prefix=redis_prefix),
        MemoryRecordLog(),
        RedisFallback(),
        spool=spool,
    )
    assert log.flush() == 2
    assert turn_ids(redis_client, redis_prefix) == ["old1", "old2"]
    spool.path.write_text(old_lines, encoding="utf-8")  # what the killed worker left
    assert log.flush() == 2
    assert turn_ids(redis_client, redis_prefix) == ["old1", "old2"]
    assert spool.count() == 0


def test_each_kept_record_carries_its_id_in_the_spool(redis_prefix: str, tmp_path: Path) -> None:
    """The id a record gets when it is kept is on its spool line, different for each record."""
    spool = spool_of(tmp_path)
    log = FallbackRecordLog(
        RedisRecordLog(redis.Redis(port=1), prefix=redis_prefix),  # nothing listens: an outage
        MemoryRecordLog(),
        RedisFallback(retry_s=60),
        spool=spool,
    )
    for n in range(2):
        vote(FeedbackStore(log), f"t{n}")
    lines = [json.loads(line) for line in spool.path.read_text(encoding="utf-8").splitlines()]
    ids = [line["write_id"] for line in lines]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 2
    assert [KeptRecord.from_dict(line).write_id for line in lines] == ids
