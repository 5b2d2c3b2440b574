"""A batch whose processing alone outlasts the poll cycle's time budget: the runner halves the
batch it takes until one fits, so the stream makes progress (it used to run out of time, read
the same batch again and run out of time again, forever), then grows it back once it fits."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from threefold.streaming.runner import (
    BatchResult,
    ConsumerRunner,
    Message,
    Output,
    RunnerStatus,
)

from .test_runner import _committed, _send, _topics

pytestmark = pytest.mark.integration
SAFETY_S = 90  # a runner that never gets through the backlog stops here and the test fails
POLL_INTERVAL_MS = 3000  # the cycle's budget: 1.5 s
MAX_BATCH = 8
SLOW_S = 0.3  # per slow message: 8 take 2.4 s, past the budget; 4 take 1.2 s, within it
SLOW, FAST = 8, 128  # then quick messages enough to grow the limit back from 1 (56), twice


def _echo_slowly(batch: list[Message]) -> list[int]:
    """Each message's `n`, after SLOW_S for each one marked slow."""
    values = [m.json() for m in batch]
    time.sleep(SLOW_S * sum(1 for v in values if v["slow"]))
    return [v["n"] for v in values]


class SlowThenFast:
    """Echoes `n`, slowly for the first messages: all of it in `process`."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def process(self, batch: list[Message]) -> BatchResult:
        return self._outputs(_echo_slowly(batch))

    def _outputs(self, numbers: list[int]) -> BatchResult:
        return BatchResult([Output(self.out_topic, {"echo": n}) for n in numbers])


class PreparedSlowThenFast(SlowThenFast):
    """The same, slow in `prepare` (the runner's worker thread; `apply` waits for it)."""

    def prepare(self, batch: list[Message]) -> list[int]:
        return _echo_slowly(batch)

    def apply(self, batch: list[Message], prepared: list[int]) -> BatchResult:
        return self._outputs(prepared)


@pytest.mark.parametrize("kind", [SlowThenFast, PreparedSlowThenFast], ids=["plain", "pipelined"])
def test_a_batch_slower_than_the_poll_cycle_budget_is_split_until_it_fits_then_regrown(
    kind, kafka_bootstrap, unique_name, read_topic, caplog
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    total = SLOW + FAST
    _send(kafka_bootstrap, src, [{"n": n, "slow": n < SLOW} for n in range(total)])
    group = unique_name("g")
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=kind(out),
        dead_letter_topic=dlq,
        max_batch=MAX_BATCH,
        max_wait_ms=500,  # full batches from the backlog
        max_reconnect_backoff_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS},
    )
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    metric = runner.metrics.registry.get_sample_value
    limit = "threefold_stream_batch_limit"

    def caught_up() -> bool:  # every message read (and at a stop, what is left is committed)
        return metric("threefold_stream_consumer_lag", {"topic": src, "partition": "0"}) == 0

    runner.run(stop_when=lambda: caught_up() and metric(limit) == MAX_BATCH, stop_after=SAFETY_S)

    assert _committed(kafka_bootstrap, group, src) == total, f"no progress: {runner.stats}"
    echoes = {json.loads(r.value)["echo"] for r in read_topic(out, min_count=total)}
    assert echoes == set(range(total))
    fields = [getattr(r, "fields", {}) for r in caplog.records]
    shrunk = [f["batch_limit"] for f in fields if f.get("event") == "poll_cycle_out_of_time"]
    assert shrunk and shrunk[0] == MAX_BATCH // 2, shrunk  # halved at the first overrun
    grown = [f["batch_limit"] for f in fields if f.get("event") == "batch_limit_raised"]
    assert grown and grown[-1] == MAX_BATCH, grown  # and doubled back once batches fit
    assert metric(limit) == MAX_BATCH
    assert metric("threefold_stream_poll_cycles_out_of_time_total") >= 1


class SlowFilter:
    """Takes SLOW_S * 1.5 per message and outputs nothing: a full batch outlasts even
    max_poll_interval_ms, and with nothing to flush the commit is the first Kafka call."""

    def process(self, batch: list[Message]) -> BatchResult:
        time.sleep(SLOW_S * 1.5 * len(batch))
        return BatchResult()


def test_a_commit_refused_after_the_group_dropped_an_overrunning_consumer_also_halves_the_batch(
    kafka_bootstrap, unique_name, caplog, monkeypatch
) -> None:
    """Past max_poll_interval_ms kafka-python's heartbeat thread leaves the group, and the
    commit that follows is refused (CommitFailedError) rather than timed out; the batch is then
    read again after rejoining, as big as before, unless that overrun halves it too."""
    commit = KafkaConsumer.commit

    def commit_awaiting_the_answer(consumer: KafkaConsumer, offsets=None, timeout_ms=None):
        """The real commit, without the cycle's (spent) limit: a consumer already out of its
        group gets kafka-python's refusal every time, not a timeout that may come first."""
        return commit(consumer, offsets)

    monkeypatch.setattr(KafkaConsumer, "commit", commit_awaiting_the_answer)
    src, _, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"n": n} for n in range(MAX_BATCH)])
    group = unique_name("g")
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=SlowFilter(),
        dead_letter_topic=dlq,
        max_batch=MAX_BATCH,  # 3.6 s, past the poll interval; 4 take 1.8 s, within it
        max_wait_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS, "heartbeat_interval_ms": 100},
    )
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    metric = runner.metrics.registry.get_sample_value

    def caught_up() -> bool:  # committed up to the end of the topic
        lag = metric("threefold_stream_consumer_lag", {"topic": src, "partition": "0"})
        return bool(metric("threefold_stream_commits_total", {"outcome": "ok"})) and lag == 0

    runner.run(stop_when=caught_up, stop_after=SAFETY_S)

    assert _committed(kafka_bootstrap, group, src) == MAX_BATCH, f"no progress: {runner.stats}"
    overruns = [
        (f["doing"], f["batch_limit"])
        for f in (getattr(r, "fields", {}) for r in caplog.records)
        if f.get("event") == "poll_cycle_out_of_time"
    ]
    assert overruns[:1] == [("committing a batch's offsets", MAX_BATCH // 2)], overruns
    assert metric("threefold_stream_batch_limit") == MAX_BATCH // 2
    # The refused batch is counted once, when committed after reading it again (it was
    # counted at the refusal too: 16 processed of 8).
    assert runner.stats.processed == MAX_BATCH, runner.stats
    assert metric("threefold_stream_messages_processed_total", {"topic": src}) == MAX_BATCH
    assert metric("threefold_stream_commits_total", {"outcome": "failed"}) >= 1


class SlowOnFirstSight:
    """Outputs nothing; `prepare` takes each message's `slow_s` the first time it prepares it,
    no time after."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def process(self, batch: list[Message]) -> BatchResult:
        return self.apply(batch, self.prepare(batch))

    def prepare(self, batch: list[Message]) -> None:
        new = [m for m in batch if m.offset not in self.seen]
        time.sleep(sum(m.json()["slow_s"] for m in new))
        self.seen |= {m.offset for m in new}

    def apply(self, batch: list[Message], prepared: None) -> BatchResult:
        return BatchResult()


def test_a_refused_commit_on_the_pipelined_path_halves_the_batch_limit_once(
    kafka_bootstrap, unique_name, caplog, monkeypatch
) -> None:
    """The refused batch's successor was being prepared, which cannot be stopped: the next
    batch's prepare waited behind it on the worker, its cycle overran too and the limit was
    halved twice (8 -> 4 -> 2) for one overrun."""
    commit = KafkaConsumer.commit
    monkeypatch.setattr(
        KafkaConsumer,
        "commit",
        lambda consumer, offsets=None, timeout_ms=None: commit(consumer, offsets),
    )  # the refusal every time, not a timeout that may come first (see the test above)
    src, _, dlq = _topics(kafka_bootstrap, unique_name)
    total = 2 * MAX_BATCH
    # The first batch takes 4 s, past the poll interval; the second, being prepared when the
    # first's commit is refused, 10 s: longer than rejoining the group takes.
    slow_s = [0.5] * MAX_BATCH + [1.25] * MAX_BATCH
    _send(kafka_bootstrap, src, [{"n": n, "slow_s": s} for n, s in enumerate(slow_s)])
    group = unique_name("g")
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=SlowOnFirstSight(),
        dead_letter_topic=dlq,
        max_batch=MAX_BATCH,
        max_wait_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS, "heartbeat_interval_ms": 100},
    )
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    metric = runner.metrics.registry.get_sample_value

    def caught_up() -> bool:
        lag = metric("threefold_stream_consumer_lag", {"topic": src, "partition": "0"})
        return _committed_ok(metric) and lag == 0

    runner.run(stop_when=caught_up, stop_after=SAFETY_S)

    assert _committed(kafka_bootstrap, group, src) == total, f"no progress: {runner.stats}"
    halved_to = [
        f["batch_limit"]
        for f in (getattr(r, "fields", {}) for r in caplog.records)
        if f.get("event") == "poll_cycle_out_of_time"
    ]
    assert halved_to == [MAX_BATCH // 2], halved_to
    assert metric("threefold_stream_batch_limit") == MAX_BATCH // 2
    assert runner.stats.processed == total, runner.stats


def _committed_ok(metric) -> bool:
    return bool(metric("threefold_stream_commits_total", {"outcome": "ok"}))


class SlowDependency:
    """Echoes each message after waiting DEPENDENCY_S for "its dependency" (a Redis that
    answers, slowly): one message takes longer than the poll cycle's budget."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def process(self, batch: list[Message]) -> BatchResult:
        time.sleep(DEPENDENCY_S * len(batch))
        return BatchResult([Output(self.out_topic, {"echo": m.json()["n"]}) for m in batch])


DEPENDENCY_S = POLL_INTERVAL_MS / 1000 / 2 + 0.2  # past the 1.5 s budget, within the interval


def test_processing_one_message_past_the_budget_reports_a_slow_dependency_not_kafka(
    kafka_bootstrap, unique_name, caplog
) -> None:
    """At a batch limit of 1 every cycle ran out of time, reconnected and reported kafka_down,
    naming the wrong dependency: it is a dependency outage of the processor (backoff, the
    partitions paused, the consumer stays in its group)."""
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"n": n} for n in range(3)])
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=unique_name("g"),
        processor=SlowDependency(out),
        dead_letter_topic=dlq,
        max_batch=1,
        max_wait_ms=50,
        max_reconnect_backoff_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS},
    )
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    seen: list[RunnerStatus] = []

    def reported() -> bool:
        seen.append(runner.status())
        return seen[-1].state == "dependency_down" or runner.stats.reconnects > 0

    runner.run(stop_when=reported, stop_after=SAFETY_S)

    assert runner.stats.reconnects == 0, runner.stats
    assert seen[-1].state == "dependency_down", seen[-1]
    assert "processing one message took" in seen[-1].reason
    assert "raise max_poll_interval_ms" in seen[-1].reason
    slow = [
        f.get("slow")
        for f in (getattr(r, "fields", {}) for r in caplog.records)
        if f.get("event") == "poll_cycle_out_of_time"
    ]
    assert slow and set(slow) == {"processing"}, slow
    metric = runner.metrics.registry.get_sample_value
    assert metric("threefold_stream_dependency_retries_total") >= 1
    assert metric("threefold_stream_batch_limit") == 1


class SlowDependencyWithIdleWork(SlowDependency):
    """SlowDependency with an `on_idle` whose quick calls succeed (as the alerts processor's
    do under a Redis that is merely slow); `slow` False: the dependency is quick again."""

    def __init__(self, out_topic: str) -> None:
        super().__init__(out_topic)
        self.slow = True
        self.idle_calls = 0

    def process(self, batch: list[Message]) -> BatchResult:
        if self.slow:
            return super().process(batch)
        return BatchResult([Output(self.out_topic, {"echo": m.json()["n"]}) for m in batch])

    def on_idle(self) -> None:
        self.idle_calls += 1


def test_a_slow_dependency_outage_backs_off_until_a_batch_commits_though_on_idle_succeeds(
    kafka_bootstrap, unique_name, caplog
) -> None:
    """on_idle succeeding ended the outage: the same message was read again, overran again and
    started a new outage at retry 1, every 0.5 s plus the budget, for ever, the state flapping
    between dependency_down and running."""
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"n": n} for n in range(3)])
    processor = SlowDependencyWithIdleWork(out)
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=unique_name("g"),
        processor=processor,
        dead_letter_topic=dlq,
        max_batch=1,
        max_wait_ms=50,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS},
    )
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    metric = runner.metrics.registry.get_sample_value
    states: list[str] = []

    def done() -> bool:
        states.append(runner.status().state)
        if metric("threefold_stream_dependency_retries_total") >= 3:
            processor.slow = False  # the dependency answers quickly again
        return runner.stats.processed >= 3

    runner.run(stop_when=done, stop_after=SAFETY_S)

    fields = [getattr(r, "fields", {}) for r in caplog.records]
    retries = [(f["retry"], f["delay_s"]) for f in fields if f.get("event") == "dependency_retry"]
    assert retries == [(1, 0.5), (2, 1.0), (3, 2.0)], retries
    recovered = [f["retries"] for f in fields if f.get("event") == "dependency_recovered"]
    assert recovered == [3], recovered  # ended once, by the batch that committed
    assert processor.idle_calls >= 1  # its on_idle ran, and succeeded, during the outage
    changes = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert changes.count("dependency_down") == 1, changes  # one outage, no flapping


class SlowOnceFilter:
    """Outputs nothing, so a batch's commit is its first Kafka call; a batch with offset 0
    takes longer than the poll cycle's budget the first time. `processed` counts each offset."""

    def __init__(self) -> None:
        self.processed: Counter[int] = Counter()

    def process(self, batch: list[Message]) -> BatchResult:
        if not self.processed[0] and any(m.offset == 0 for m in batch):
            time.sleep(DEPENDENCY_S)
        self.processed.update(m.offset for m in batch)
        return BatchResult()


@pytest.mark.parametrize("max_batch", [2, 1], ids=["limit_halved", "at_limit_1"])
def test_a_commit_cut_short_after_processing_overran_that_landed_is_not_read_again(
    max_batch, kafka_bootstrap, unique_name, monkeypatch
) -> None:
    """Without a reconnect the runner read the batch again from its first offset: counted once
    when the group's offsets showed the commit had landed, then processed, committed (moving
    the committed offset back for a while) and counted again."""
    commit, answered = KafkaConsumer.commit, []

    def landed_but_answered_late(consumer: KafkaConsumer, offsets=None, timeout_ms=None):
        """The first commit lands, and its answer comes after the cycle gave up on it."""
        commit(consumer, offsets)
        if not answered:
            answered.append(offsets)
            raise KafkaTimeoutError("the answer came after the poll cycle's budget")

    monkeypatch.setattr(KafkaConsumer, "commit", landed_but_answered_late)
    src, _, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"n": n} for n in range(3)])
    group = unique_name("g")
    processor = SlowOnceFilter()
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=processor,
        dead_letter_topic=dlq,
        max_batch=max_batch,
        max_wait_ms=500,  # full batches from the backlog
        max_reconnect_backoff_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS},
    )
    metric = runner.metrics.registry.get_sample_value

    def caught_up() -> bool:
        lag = metric("threefold_stream_consumer_lag", {"topic": src, "partition": "0"})
        return runner.stats.processed >= 3 and lag == 0

    runner.run(stop_when=caught_up, stop_after=SAFETY_S)

    assert answered, "no commit was cut short"
    assert runner.stats.reconnects == 0, runner.stats
    assert dict(processor.processed) == {0: 1, 1: 1, 2: 1}  # none read again
    assert runner.stats.processed == 3, runner.stats
    assert metric("threefold_stream_messages_processed_total", {"topic": src}) == 3
    assert _committed(kafka_bootstrap, group, src) == 3
