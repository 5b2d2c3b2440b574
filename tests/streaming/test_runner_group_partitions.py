"""ConsumerRunner tells the processor the group's partitions after a rebalance (real broker)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Collection, Iterator

import pytest
from kafka import TopicPartition
from support.runner_threads import RunnerThreads

from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.runner import BatchResult, ConsumerRunner, Message
from threefold.streaming.services import KafkaService, start_kafka

pytestmark = pytest.mark.integration
SAFETY_S = 60


class Recorder:
    """Records its assignments and, with the thread it ran on, each group report."""

    def __init__(self) -> None:
        self.assigned: set[int] | None = None
        self.reports: list[tuple[set[int] | None, dict, threading.Thread]] = []

    def process(self, batch: list[Message]) -> BatchResult:
        return BatchResult()

    def on_partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        self.assigned = {tp.partition for tp in partitions}

    def on_group_partitions(self, partitions: dict[str, frozenset[int]]) -> None:
        self.reports.append((self.assigned, dict(partitions), threading.current_thread()))


def test_each_member_learns_every_partition_of_its_topics_on_its_consumer_thread(
    kafka_bootstrap, unique_name
) -> None:
    """Two members split a 3-partition topic; after the rebalance each one's processor is told
    all 3 partitions (the other member's too), on the thread that runs the runner (kafka's
    rebalance callbacks may not make blocking calls)."""
    src, dlq = unique_name("in"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src], partitions=3)
    ensure_topics(kafka_bootstrap, [dlq])
    group = unique_name("g")
    processors = [Recorder(), Recorder()]
    runners = [
        ConsumerRunner(
            kafka=kafka_bootstrap,
            topics=[src],
            group_id=group,
            processor=p,
            dead_letter_topic=dlq,
            max_wait_ms=50,
        )
        for p in processors
    ]
    running = RunnerThreads(SAFETY_S)
    threads = [running.start(runner) for runner in runners]

    def reported_after_split() -> bool:
        split = sorted(len(p.assigned or ()) for p in processors) == [1, 2]
        return split and all(p.reports and p.reports[-1][0] == p.assigned for p in processors)

    try:
        running.wait_for(reported_after_split, "both members told the group's partitions")
    finally:
        running.stop_all()
    assert not running.errors, running.errors
    for processor, thread in zip(processors, threads, strict=True):
        _, partitions, ran_on = processor.reports[-1]
        assert partitions == {src: frozenset({0, 1, 2})}
        assert ran_on is thread


class FreezesTheBrokerOnAssignment(Recorder):
    """Stops the broker answering (SIGSTOP) at its first assignment; counts idle turns after."""

    def __init__(self, broker: KafkaService) -> None:
        super().__init__()
        self.broker = broker
        self.frozen = False
        self.idle_turns_while_frozen = 0

    def on_partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        super().on_partitions_assigned(partitions)
        if not self.frozen:
            os.kill(self.broker.pid, signal.SIGSTOP)
            self.frozen = True

    def on_idle(self) -> None:
        if self.frozen:
            self.idle_turns_while_frozen += 1


class StopsTheBrokerOnAssignment(Recorder):
    """Stops the broker (SIGTERM, then SIGKILL) at its first assignment."""

    def __init__(self, broker: KafkaService) -> None:
        super().__init__()
        self.broker = broker

    def on_partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        super().on_partitions_assigned(partitions)
        self.broker.stop()  # idempotent: later assignments, on a restarted broker, stop nothing


@pytest.fixture
def own_broker() -> Iterator[list[KafkaService]]:
    """A broker this test may freeze, stop and restart (the list holds the current one)."""
    brokers = [start_kafka()]
    try:
        yield brokers
    finally:
        if brokers[-1].pid is not None:
            os.kill(brokers[-1].pid, signal.SIGCONT)
        brokers[-1].stop()


def test_a_broker_that_stops_answering_at_a_rebalance_does_not_stall_the_consumer_loop(
    own_broker, caplog
) -> None:
    """The broker stops answering right after the assignment, when the runner asks it for the
    group's partitions. kafka-python waits for that answer with no limit of its own (a broker
    stopped for a few seconds: as long as it stays away, > 200 s seen); a frozen broker makes
    the wait deterministic, bounded only by request_timeout_ms, set here past the test's
    patience. The consumer loop must go on turning (idle ticks, stop() honoured) and warn that
    the answer is overdue; once the broker answers again the processor gets the partitions."""
    broker = own_broker[0]
    bootstrap = broker.bootstrap_servers
    processor = FreezesTheBrokerOnAssignment(broker)
    runner = _two_partition_runner(bootstrap, processor, request_timeout_ms=4 * SAFETY_S * 1000)
    running = RunnerThreads(SAFETY_S)
    caplog.set_level(logging.WARNING, logger="threefold.streaming.runner")
    running.start(runner)

    def overdue_logged() -> bool:
        fields = [getattr(r, "fields", {}) for r in caplog.records]
        return any(f.get("event") == "group_partitions_overdue" for f in fields)

    try:
        running.wait_for(lambda: processor.idle_turns_while_frozen >= 3, "idle turns, frozen")
        running.wait_for(overdue_logged, "the overdue answer logged")
        assert processor.reports == []
        os.kill(broker.pid, signal.SIGCONT)
        running.wait_for(lambda: bool(processor.reports), "the group's partitions reported")
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        running.stop_all()
    assert not running.errors, running.errors
    assert processor.reports[0][1] == {"news": frozenset({0, 1})}


def test_a_broker_stopped_at_a_rebalance_is_an_outage_the_consumer_recovers_from(
    own_broker,
) -> None:
    """The broker is stopped (its port refuses connections) right after the assignment: the
    partitions request fails at once, so the runner reports degraded and reconnects; once a
    broker is back on the same port, the processor gets the group's partitions."""
    bootstrap = own_broker[0].bootstrap_servers
    processor = StopsTheBrokerOnAssignment(own_broker[0])
    runner = _two_partition_runner(bootstrap, processor)
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(lambda: runner.degraded, "the outage reported")
        assert processor.reports == []
        own_broker.append(start_kafka(port=int(bootstrap.rsplit(":", 1)[1])))
        ensure_topics(bootstrap, ["news"], partitions=2)
        ensure_topics(bootstrap, ["news.dlq"])
        running.wait_for(lambda: bool(processor.reports), "the group's partitions reported")
    finally:
        running.stop_all()
    assert not running.errors, running.errors
    assert processor.reports[-1][1] == {"news": frozenset({0, 1})}
    assert runner.stats.reconnects >= 1


def _two_partition_runner(
    bootstrap: str, processor: Recorder, **consumer_overrides: object
) -> ConsumerRunner:
    ensure_topics(bootstrap, ["news"], partitions=2)
    ensure_topics(bootstrap, ["news.dlq"])
    return ConsumerRunner(
        kafka=bootstrap,
        topics=["news"],
        group_id="g-broker-fault",
        processor=processor,
        dead_letter_topic="news.dlq",
        max_wait_ms=50,
        consumer_overrides=consumer_overrides,
    )
