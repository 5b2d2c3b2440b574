"""A batch whose processing alone outlasts the poll cycle's time budget: the runner halves the
batch it takes until one fits, so the stream makes progress (it used to run out of time, read
the same batch again and run out of time again, forever), then grows it back once it fits."""

from __future__ import annotations

import json
import logging
import time

import pytest
from kafka import KafkaConsumer

from threefold.streaming.runner import BatchResult, ConsumerRunner, Message, Output

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
