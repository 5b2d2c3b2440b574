"""What a worker keeps through a Redis outage: the background record flush, remembered handoffs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from support.services import frozen

from threefold.apps.qa.fallback import (
    FallbackRecordLog,
    KeptRecord,
    RecordFlusher,
    RedisFallback,
    RememberingHandoffStore,
)
from threefold.apps.qa.feedback import MemoryRecordLog
from threefold.apps.qa.handoff_queue import (
    Conversation,
    MemoryHandoffStore,
    claim,
    end,
    new_conversation,
)
from threefold.apps.qa.metrics import QAMetrics
from threefold.apps.qa.redis_feedback import RedisRecordLog
from threefold.apps.qa.redis_handoff import RedisHandoffStore
from threefold.apps.qa.sessions import new_id
from threefold.streaming.record_spool import RecordSpool
from threefold.streaming.write_ids import new_write_id


def wait_until(condition: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.integration
def test_records_kept_in_an_outage_reach_redis_once_each_before_newer_ones(
    hung_redis, redis_prefix: str
) -> None:
    """The flusher and eight request threads write at once when Redis is back: every record
    once, each writer's in order, and none of them ahead of the records kept before."""
    client = redis.Redis.from_url(hung_redis.url, socket_timeout=0.3)
    log = FallbackRecordLog(
        RedisRecordLog(client, prefix=redis_prefix), MemoryRecordLog(), RedisFallback(retry_s=0.5)
    )
    flusher = RecordFlusher(log, first_retry_s=0.05, max_retry_s=0.5)
    with frozen(hung_redis):
        for n in range(200):
            log.append("feedback", {"writer": -1, "n": n})
    assert log.pending() == 200
    time.sleep(0.6)  # the breaker closes: appends go to Redis again

    def write(writer: int) -> None:
        for n in range(25):
            log.append("feedback", {"writer": writer, "n": n})

    writers = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    try:
        flusher.start()
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert wait_until(
            lambda: log.pending() == 0 and client.llen(redis_prefix + "feedback") >= 400
        )
        stored = list(RedisRecordLog(client, prefix=redis_prefix).read("feedback"))
    finally:
        flusher.stop()
        client.close()
    assert not flusher.running
    assert len(stored) == 200 + 8 * 25
    assert stored[:200] == [{"writer": -1, "n": n} for n in range(200)]
    for writer in range(8):
        assert [r["n"] for r in stored if r["writer"] == writer] == list(range(25))


class StopsWriting:
    """Redis records that stop being written at the record `{"n": stop_at}`: the write waits
    for `resume` (meanwhile another request finds Redis down), then fails as a lost connection."""

    def __init__(self, log: RedisRecordLog, *, stop_at: int) -> None:
        self.log = log
        self.stop_at = stop_at
        self.stopped = threading.Event()
        self.resume = threading.Event()

    def append_many(self, records: Sequence[tuple[str, dict[str, Any], str]]) -> Any:
        if any(r.get("n") == self.stop_at for _, r, _ in records) and not self.resume.is_set():
            self.stopped.set()
            self.resume.wait(10)
            raise RedisConnectionError("connection lost mid-flush")
        return self.log.append_many(records)

    def read(self, name: str) -> Any:
        return self.log.read(name)


@pytest.mark.integration
def test_records_a_failed_flush_did_not_write_stay_ahead_of_records_kept_meanwhile(
    redis_client, redis_prefix: str
) -> None:
    redis_log = RedisRecordLog(redis_client, prefix=redis_prefix)
    primary = StopsWriting(redis_log, stop_at=2)
    breaker = RedisFallback(retry_s=60)
    memory = MemoryRecordLog()
    log = FallbackRecordLog(primary, memory, breaker)
    for n in (1, 2, 3):
        memory.append("feedback", {"n": n})  # kept during an outage
    failed: list[Exception] = []

    def flush_in_background() -> None:
        try:
            log.flush()
        except RedisConnectionError as exc:
            failed.append(exc)

    def lost() -> None:
        raise RedisConnectionError("connection refused")

    flush = threading.Thread(target=flush_in_background)
    flush.start()
    assert primary.stopped.wait(10)
    breaker.call("append_feedback", lost, lambda: None)  # another request finds Redis down
    log.append("feedback", {"n": 4})  # so this one is kept, while the flush still writes
    primary.resume.set()
    flush.join()
    assert len(failed) == 1
    assert [r["n"] for r in redis_log.read("feedback")] == [1]
    assert [r["n"] for r in memory.read("feedback")] == [2, 3, 4]
    assert log.flush() == 3
    assert [r["n"] for r in redis_log.read("feedback")] == [1, 2, 3, 4]


def redis_goes_down(breaker: RedisFallback) -> None:
    """A request finds Redis unreachable: the breaker opens, records are kept."""

    def refused() -> None:
        raise RedisConnectionError("connection refused")

    breaker.call("append_feedback", refused, lambda: None)


class KeepsANewerRecordThenFails(RedisRecordLog):
    """Redis goes away while a flush writes the record `{"n": fail_at}`: just before, a request
    finds the breaker open and keeps a newer record (`meanwhile`)."""

    def __init__(self, client: Any, *, prefix: str, fail_at: int) -> None:
        super().__init__(client, prefix=prefix)
        self.fail_at = fail_at
        self.meanwhile: Callable[[], None] = lambda: None

    def append_many(self, records: Sequence[tuple[str, dict[str, Any], str]]) -> Any:
        if any(record.get("n") == self.fail_at for _, record, _ in records):
            self.fail_at = -1
            self.meanwhile()
            raise RedisConnectionError("redis went away again")
        return super().append_many(records)


@pytest.mark.integration
def test_a_record_kept_while_a_flush_writes_memory_does_not_overtake_the_flushed_ones(
    redis_client, redis_prefix: str, tmp_path: Path
) -> None:
    """The spool, full, took R0 and refused R1, R2 (kept in memory). A flush writes R0 and takes
    R1, R2 out of memory; meanwhile a request finds the breaker open and keeps its newer R3, and
    the flush fails at R1 and puts R1, R2 back. The next flush writes R0, R1, R2, R3 (before:
    R3 went to the spool, memory looking empty, and reached Redis before R1 and R2)."""
    one_line = len(json.dumps(KeptRecord("feedback", {"n": 0}, new_write_id()).to_dict())) + 1
    primary = KeepsANewerRecordThenFails(redis_client, prefix=redis_prefix, fail_at=1)
    breaker = RedisFallback(retry_s=60)
    log = FallbackRecordLog(
        primary,
        MemoryRecordLog(),
        breaker,
        spool=RecordSpool(
            tmp_path,
            file_name="records.jsonl",
            record_type=KeptRecord,
            max_bytes=one_line,
        ),
    )
    primary.meanwhile = lambda: log.append("feedback", {"n": 3})
    redis_goes_down(breaker)
    for n in range(3):
        log.append("feedback", {"n": n})
    assert (log.spooled(), log.in_memory()) == (1, 2)
    with pytest.raises(RedisConnectionError):
        log.flush()
    assert (log.spooled(), log.in_memory()) == (0, 3)
    assert log.flush() == 3
    assert [r["n"] for r in primary.read("feedback")] == [0, 1, 2, 3]


class FakeKeptLog:
    """A double of `FallbackRecordLog` for the flusher's timing: counts and refuses flushes."""

    def __init__(self, *, kept: int, refuse: bool) -> None:
        self.kept = kept
        self.refuse = refuse
        self.on_kept: list[Any] = []
        self.pending_calls = 0
        self.attempts: list[float] = []

    def pending(self) -> int:
        self.pending_calls += 1
        return self.kept

    def flush(self) -> int:
        self.attempts.append(time.monotonic())
        if self.refuse:
            raise RedisConnectionError("refused")
        flushed, self.kept = self.kept, 0
        return flushed


def test_the_flusher_sleeps_while_nothing_is_kept() -> None:
    log = FakeKeptLog(kept=0, refuse=False)
    flusher = RecordFlusher(log, first_retry_s=0.01, max_retry_s=0.01)  # type: ignore[arg-type]
    flusher.start()
    try:
        assert wait_until(lambda: log.pending_calls >= 1, timeout_s=5)
        calls = log.pending_calls
        time.sleep(0.5)
        assert log.pending_calls == calls  # no polling
        log.kept = 3
        for listener in log.on_kept:
            listener()
        assert wait_until(lambda: log.kept == 0, timeout_s=5)
    finally:
        flusher.stop()
    assert not flusher.running
    assert len(log.attempts) == 1


def test_the_flusher_backs_off_to_its_cap_and_kept_records_do_not_hurry_it() -> None:
    log = FakeKeptLog(kept=1, refuse=True)
    flusher = RecordFlusher(log, first_retry_s=0.05, max_retry_s=0.2)  # type: ignore[arg-type]
    stop_waking = threading.Event()

    def keep_records() -> None:  # what a busy worker does during an outage
        while not stop_waking.is_set():
            for listener in log.on_kept:
                listener()
            time.sleep(0.001)

    waker = threading.Thread(target=keep_records)
    waker.start()
    flusher.start()
    try:
        time.sleep(1.5)
    finally:
        stop_waking.set()
        waker.join()
        flusher.stop()
    gaps = [later - earlier for earlier, later in pairwise(log.attempts)]
    assert len(gaps) >= 4, gaps
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095, gaps  # doubling from first_retry_s
    assert all(gap >= 0.195 for gap in gaps[2:-1]), gaps  # then at the cap, never sooner
    assert max(gaps) < 1.0, gaps  # capped (with room for a loaded CPU)


def test_the_flusher_says_which_retry_times_are_wrong() -> None:
    log = FakeKeptLog(kept=0, refuse=False)
    with pytest.raises(ValueError, match=r"first_retry_s=5 and max_retry_s=1"):
        RecordFlusher(log, first_retry_s=5, max_retry_s=1)  # type: ignore[arg-type]


def test_handoffs_are_remembered_while_waiting_or_claimed_and_forgotten_when_ended() -> None:
    store = RememberingHandoffStore(MemoryHandoffStore(), ttl_s=60)
    waiting, claimed, released, never = (new_id() for _ in range(4))
    for session_id in (waiting, claimed, released):
        store.open(new_conversation(session_id, reason="requested", page_url=None, candidates=[]))
    store.update(claimed, lambda c: claim(c, "ana", 1.0))
    store.update(released, lambda c: claim(c, "ana", 1.0))
    store.update(released, lambda c: end(c, "ana", "released", 2.0))
    assert [store.with_person(s) for s in (waiting, claimed, released, never)] == [
        True,
        True,
        False,
        False,
    ]


def test_a_worker_learns_a_handoff_from_any_read_of_the_shared_store() -> None:
    shared = MemoryHandoffStore()  # what another worker wrote
    session_id = new_id()
    shared.open(new_conversation(session_id, reason="requested", page_url=None, candidates=[]))
    by_get = RememberingHandoffStore(shared, ttl_s=60)
    by_list = RememberingHandoffStore(shared, ttl_s=60)
    assert not by_get.with_person(session_id)
    by_get.get(session_id)
    by_list.list("waiting")
    assert by_get.with_person(session_id) and by_list.with_person(session_id)
    shared.update(session_id, lambda c: claim(c, "ana", 1.0))
    shared.update(session_id, lambda c: end(c, "ana", "closed", 2.0))
    by_get.get(session_id)
    assert not by_get.with_person(session_id)


def test_remembered_handoffs_expire_and_are_bounded() -> None:
    now = [0.0]
    store = RememberingHandoffStore(
        MemoryHandoffStore(), ttl_s=10, max_sessions=2, clock=lambda: now[0]
    )
    first, second, third = (new_id() for _ in range(3))
    for session_id in (first, second, third):
        store.open(new_conversation(session_id, reason="requested", page_url=None, candidates=[]))
    assert [store.with_person(s) for s in (first, second, third)] == [False, True, True]
    now[0] = 10.0
    assert not store.with_person(third)


def hand_off(store: Any, session_id: str) -> Conversation:
    return store.open(
        new_conversation(session_id, reason="requested", page_url=None, candidates=[])
    )


@pytest.mark.integration
def test_a_worker_forgets_a_handoff_that_left_the_consoles_lists(
    redis_client, redis_prefix: str
) -> None:
    """Worker `console` learns the handoff from the agent console's lists only; worker `desk`
    claims and closes it. Each list of the console teaches `console` where it went."""
    console = RememberingHandoffStore(
        RedisHandoffStore(redis_client, prefix=redis_prefix), ttl_s=1800
    )
    desk = RememberingHandoffStore(RedisHandoffStore(redis_client, prefix=redis_prefix), ttl_s=1800)
    session_id = new_id()

    def console_refresh() -> bool:  # what the console asks for, then the memory
        console.list("waiting")
        console.list("claimed")
        return console.with_person(session_id)

    hand_off(desk, session_id)
    assert console_refresh()
    desk.update(session_id, lambda c: claim(c, "ana", 1.0))
    assert console_refresh()  # claimed: still with a person
    desk.update(session_id, lambda c: end(c, "ana", "closed", 2.0))
    assert not console_refresh()
    hand_off(desk, session_id)  # a second handoff of the same session
    assert console_refresh()
    desk.update(session_id, lambda c: claim(c, "ana", 3.0))
    desk.update(session_id, lambda c: end(c, "ana", "released", 4.0))
    console.list("waiting")  # the console's list of waiting conversations alone
    assert not console.with_person(session_id)


class HeldRead(MemoryHandoffStore):
    """A store whose `get` and `list` read, then wait for `go` before returning what they read
    (a slow read: the conversation can change meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.read_done = threading.Event()
        self.go = threading.Event()

    def _held(self, found: Any) -> Any:
        if self.hold:
            self.read_done.set()
            self.go.wait(10)
        return found

    def get(self, session_id: str) -> Conversation | None:
        return self._held(super().get(session_id))

    def list(self, status: str, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        return self._held(super().list(status, limit=limit, offset=offset))


def in_background(call: Any) -> threading.Thread:
    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_read_from_before_a_close_does_not_bring_the_person_back() -> None:
    shared = HeldRead()
    worker = RememberingHandoffStore(shared, ttl_s=1800)
    session_id = new_id()
    hand_off(worker, session_id)
    worker.update(session_id, lambda c: claim(c, "ana", 1.0))
    shared.hold = True
    read = in_background(lambda: worker.get(session_id))  # e.g. the widget's long poll
    assert shared.read_done.wait(10)
    shared.hold = False
    worker.update(session_id, lambda c: end(c, "ana", "closed", 2.0))  # the agent closes it
    shared.go.set()
    read.join()
    assert shared.get(session_id).status == "closed"
    assert not worker.with_person(session_id)


def test_a_handoff_opened_while_a_list_is_read_is_not_taken_as_moved_on() -> None:
    """A list read before the handoff was opened does not have it: that says nothing of it."""
    shared = HeldRead()
    worker = RememberingHandoffStore(shared, ttl_s=1800)
    session_id = new_id()
    shared.hold = True
    listing = in_background(lambda: worker.list("waiting"))  # e.g. the metrics scrape
    assert shared.read_done.wait(10)
    shared.hold = False
    hand_off(worker, session_id)
    shared.go.set()
    listing.join()
    assert worker.with_person(session_id)


def test_a_read_from_before_a_list_does_not_undo_what_the_list_told() -> None:
    shared = HeldRead()
    worker = RememberingHandoffStore(shared, ttl_s=1800)
    other = RememberingHandoffStore(shared, ttl_s=1800)
    session_id = new_id()
    hand_off(other, session_id)
    worker.list("waiting")
    shared.hold = True
    read = in_background(lambda: worker.get(session_id))  # reads it still waiting
    assert shared.read_done.wait(10)
    shared.hold = False
    other.update(session_id, lambda c: claim(c, "ana", 1.0))
    worker.list("waiting")  # moved on from waiting: claimed or ended, this worker cannot tell
    shared.go.set()
    read.join()
    assert not worker.with_person(session_id)
    worker.get(session_id)  # a read of its own tells it the rest
    assert worker.with_person(session_id)


def dropped(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("qa_records_dropped_total", {"kind": kind})


@pytest.mark.integration
def test_a_full_memory_counts_and_logs_what_it_drops_once_per_outage_and_every_thousand(
    hung_redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No spool (or one refusing): memory keeps the newest 3 records per log. The 1,002 votes
    it drops are counted, and logged at the first drop and at the 1,000th, not once each; after
    Redis took the rest, the next outage's first drop is logged again."""
    client = redis.Redis.from_url(hung_redis.url, socket_timeout=0.3)
    registry = CollectorRegistry()
    metrics = QAMetrics(registry)
    log = FallbackRecordLog(
        RedisRecordLog(client, prefix=redis_prefix),
        MemoryRecordLog(max_entries=3),
        RedisFallback(retry_s=60),
    )
    log.on_dropped.append(metrics.observe_records_dropped)
    try:
        with frozen(hung_redis), caplog.at_level(logging.ERROR, logger="threefold.apps.qa"):
            for n in range(1005):
                log.append("feedback", {"n": n})
            log.append("unanswered", {"question": "huh?"})
            lines = [r.getMessage() for r in caplog.records if "records lost" in r.getMessage()]
            assert len(lines) == 2, lines
            assert "dropped the oldest 1 feedback, 1 since the outage began" in lines[0]
            assert "1000 since the outage began" in lines[1]
            assert dropped(registry, "feedback") == 1002
            assert dropped(registry, "unanswered") is None
        assert log.flush() == 4
        assert [r["n"] for r in log.primary.read("feedback")] == [1002, 1003, 1004]
        caplog.clear()
        with frozen(hung_redis), caplog.at_level(logging.ERROR, logger="threefold.apps.qa"):
            for n in range(4):
                log.append("feedback", {"n": n})
        assert "1 since the outage began" in caplog.text
        assert dropped(registry, "feedback") == 1003
    finally:
        client.close()


@pytest.mark.integration
def test_a_record_kept_in_memory_that_redis_refuses_does_not_hold_up_the_others(
    redis_client, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a spool, kept records are written one by one: one Redis refuses on its data
    (a key of another type) is logged with the record and counted, the others are written.
    Before, the flush raised at it every time and put it back: nothing after it reached Redis."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    memory = MemoryRecordLog()
    for name, record in [
        ("feedback", {"n": 1}),
        ("unanswered", {"q": "?"}),
        ("feedback", {"n": 2}),
    ]:
        memory.append(name, record)
    registry = CollectorRegistry()
    log = FallbackRecordLog(
        RedisRecordLog(redis_client, prefix=redis_prefix), memory, RedisFallback()
    )
    log.on_rejected.append(QAMetrics(registry).observe_record_rejected)
    with caplog.at_level(logging.ERROR, logger="threefold.apps.qa"):
        assert log.flush() == 2
    assert [r["n"] for r in log.primary.read("feedback")] == [1, 2]
    assert log.pending() == 0
    assert "redis refused the unanswered record kept in memory (ResponseError: WRONGTYPE" in (
        caplog.text
    )
    assert registry.get_sample_value("qa_records_rejected_total", {"kind": "unanswered"}) == 1
