"""The Kafka calls of one poll cycle share one deadline: a frozen broker (SIGSTOP) cannot hold
the consumer thread past max_poll_interval_ms, the processor's own producer and the offset
commit included; the batch it froze on is read again once the broker is back (at-least-once)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError
from support.runner_threads import RunnerThreads
from support.services import read_topic_records

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.runner import BatchResult, ConsumerRunner, Message, Output
from threefold.streaming.services import KafkaService

pytestmark = pytest.mark.integration
SAFETY_S = 90
POLL_INTERVAL_MS = 6000  # the cycle's budget: 3 s
LONG_S = 60.0  # a flush timeout far past the poll interval


class FlushesItsOwnProducer:
    """Sends and flushes a record of its own for each batch (as the alerts publisher does),
    then echoes the batch; the first batch freezes the broker (SIGSTOP) before its send."""

    def __init__(self, broker: KafkaService, side_topic: str, out_topic: str) -> None:
        self.broker = broker
        self.side_topic = side_topic
        self.out_topic = out_topic
        self.producer = JsonProducer(broker.bootstrap_servers)
        self.producer.send(side_topic, {"warm": True})  # connected, the topic's metadata known
        self.producer.flush()
        self.batches: list[list[bytes]] = []
        self.flush_errors: list[BaseException] = []
        self.frozen_flush_over = threading.Event()

    def process(self, batch: list[Message]) -> BatchResult:
        self.batches.append([m.value for m in batch])
        first = len(self.batches) == 1
        if first:
            os.kill(self.broker.pid, signal.SIGSTOP)
        self.producer.send(self.side_topic, {"batch": len(self.batches)})
        try:
            self.producer.flush(timeout=LONG_S)
        except ServiceError as exc:  # the publisher keeps what it could not send for later
            self.flush_errors.append(exc)
        if first:
            self.frozen_flush_over.set()
        return BatchResult([Output(self.out_topic, {"echo": m.json()["n"]}) for m in batch])


def test_a_frozen_broker_holds_a_poll_cycle_for_its_budget_at_most_then_the_batch_is_reread(
    own_broker, caplog
) -> None:
    bootstrap = own_broker.bootstrap_servers
    src, out, side, dlq = "news", "echoes", "side", "news.dlq"
    ensure_topics(bootstrap, [src, out, side, dlq])
    with JsonProducer(bootstrap) as feeder:
        feeder.send(src, {"n": 1})
        feeder.flush()
    processor = FlushesItsOwnProducer(own_broker, side, out)
    runner = _budgeted_runner(bootstrap, src, dlq, "g-poll-budget", processor)
    caplog.set_level(logging.WARNING, logger="threefold.streaming.runner")
    running = RunnerThreads(SAFETY_S)
    running.start(runner)

    def out_of_time_logged() -> bool:
        fields = [getattr(r, "fields", {}) for r in caplog.records]
        return any(f.get("event") == "poll_cycle_out_of_time" for f in fields)

    try:
        running.wait_for(lambda: bool(processor.batches), "the first batch")
        # The processor's flush ends with the cycle's budget, not its own 60 s timeout.
        assert processor.frozen_flush_over.wait(POLL_INTERVAL_MS / 1000), "flush held the thread"
        assert "did not acknowledge 1 queued message(s)" in str(processor.flush_errors[:1])
        running.wait_for(out_of_time_logged, "the runner's own send given up and logged")
        os.kill(own_broker.pid, signal.SIGCONT)
        echoes = read_topic_records(bootstrap, out, min_count=1, timeout_s=SAFETY_S)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        running.stop_all()
    assert not running.errors, running.errors
    assert [r.value for r in echoes] == [b'{"echo":1}']
    assert len(processor.batches) >= 2 and processor.batches[1] == processor.batches[0]
    assert runner.stats.reconnects >= 1
    assert runner.cycle_budget_s == POLL_INTERVAL_MS / 1000 / 2
    out_of_time = "threefold_stream_poll_cycles_out_of_time_total"
    assert runner.metrics.registry.get_sample_value(out_of_time) >= 1
    # The processor's own flush waited for the broker, not for its processing.
    _assert_broker_slow_and_limit_kept(runner, caplog)


class Echo:
    """Echoes each message's `n`; `echoed` lists them all."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.echoed: list[int] = []

    def process(self, batch: list[Message]) -> BatchResult:
        self.echoed += [m.json()["n"] for m in batch]
        return BatchResult([Output(self.out_topic, {"echo": m.json()["n"]}) for m in batch])


def test_a_broker_frozen_between_flush_and_commit_holds_the_commit_for_the_budget_at_most(
    own_broker, caplog, monkeypatch
) -> None:
    """The commit waited request_timeout_ms (30 s) for a frozen broker, past the poll interval."""
    bootstrap = own_broker.bootstrap_servers
    src, out, dlq = "news", "echoes", "news.dlq"
    ensure_topics(bootstrap, [src, out, dlq])
    with JsonProducer(bootstrap) as feeder:
        feeder.send(src, {"n": 1})
        feeder.flush()
    commit = KafkaConsumer.commit
    first_commit_started, first_commit_over = threading.Event(), threading.Event()

    def freeze_then_commit(consumer: KafkaConsumer, offsets=None, timeout_ms=None) -> None:
        """The real commit, on a broker frozen (SIGSTOP) just before the first one."""
        if first_commit_over.is_set():
            return commit(consumer, offsets, timeout_ms=timeout_ms)
        os.kill(own_broker.pid, signal.SIGSTOP)
        first_commit_started.set()
        try:
            return commit(consumer, offsets, timeout_ms=timeout_ms)
        finally:
            first_commit_over.set()

    monkeypatch.setattr(KafkaConsumer, "commit", freeze_then_commit)
    echo = Echo(out)
    runner = _budgeted_runner(bootstrap, src, dlq, "g-commit-budget", echo)
    caplog.set_level(logging.WARNING, logger="threefold.streaming.runner")
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(first_commit_started.is_set, "the first batch's commit")
        assert first_commit_over.wait(POLL_INTERVAL_MS / 1000), "the commit held the thread"
        os.kill(own_broker.pid, signal.SIGCONT)
        with JsonProducer(bootstrap) as feeder:
            feeder.send(src, {"n": 2})
            feeder.flush()
        running.wait_for(lambda: 2 in echo.echoed and runner.stats.batches, "news after the thaw")
        echoes = read_topic_records(bootstrap, out, timeout_s=SAFETY_S)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        running.stop_all()
    assert not running.errors, running.errors
    # The frozen commit may land once the broker is thawed; if not, the batch is read again.
    values = [json.loads(r.value)["echo"] for r in echoes]
    assert values in ([1, 2], [1, 1, 2]), values
    cut = [getattr(r, "fields", {}) for r in caplog.records]
    assert {"event": "poll_cycle_out_of_time", "doing": "committing a batch's offsets"} in [
        {"event": f.get("event"), "doing": f.get("doing")} for f in cut
    ]
    assert runner.stats.reconnects >= 1
    _assert_broker_slow_and_limit_kept(runner, caplog)
    # Each echoed input is counted once: the frozen commit counts once known to have landed.
    assert runner.stats.processed == 2, runner.stats


def _assert_broker_slow_and_limit_kept(runner: ConsumerRunner, caplog) -> None:
    """A cycle the broker's answers used up is reported as such and leaves the batch limit
    as it was: halving it (as it did) only helps when processing is what is slow."""
    metric = runner.metrics.registry.get_sample_value
    assert metric("threefold_stream_batch_limit") == runner.max_batch
    assert metric("threefold_stream_poll_cycles_broker_slow_total") >= 1
    slow = {
        f.get("slow")
        for f in (getattr(r, "fields", {}) for r in caplog.records)
        if f.get("event") == "poll_cycle_out_of_time"
    }
    assert slow == {"broker"}, slow


def test_a_commit_cut_short_that_landed_is_counted_once(
    kafka_bootstrap, unique_name, monkeypatch
) -> None:
    """A commit the budget cut short may land all the same; then its messages are not read
    again, and were never counted (an undercount in the stats and processed metrics)."""
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    with JsonProducer(kafka_bootstrap) as feeder:
        for n in range(3):
            feeder.send(src, {"n": n})
        feeder.flush()
    commit, answered = KafkaConsumer.commit, []

    def landed_but_answered_late(consumer: KafkaConsumer, offsets=None, timeout_ms=None):
        """The first commit lands, and its answer comes after the cycle gave up on it."""
        commit(consumer, offsets, timeout_ms=timeout_ms)
        if not answered:
            answered.append(offsets)
            raise KafkaTimeoutError("the answer came after the poll cycle's budget")

    monkeypatch.setattr(KafkaConsumer, "commit", landed_but_answered_late)
    runner = _budgeted_runner(kafka_bootstrap, src, dlq, unique_name("g"), Echo(out))
    metric = runner.metrics.registry.get_sample_value

    runner.run(
        stop_when=lambda: runner.stats.reconnects > 0 and runner.stats.processed >= 3,
        stop_after=20,
    )

    assert answered, "no commit was made"
    assert runner.stats.reconnects == 1, runner.stats
    assert runner.stats.processed == 3, runner.stats  # 0 before: counted nowhere
    assert metric("threefold_stream_messages_processed_total", {"topic": src}) == 3


def _budgeted_runner(
    bootstrap: str, src: str, dlq: str, group_id: str, processor: object
) -> ConsumerRunner:
    """A runner on `src` whose poll interval (so its cycle budget) is POLL_INTERVAL_MS."""
    return ConsumerRunner(
        kafka=bootstrap,
        topics=[src],
        group_id=group_id,
        processor=processor,
        dead_letter_topic=dlq,
        max_wait_ms=50,
        max_reconnect_backoff_ms=500,
        consumer_overrides={"max_poll_interval_ms": POLL_INTERVAL_MS},
    )
