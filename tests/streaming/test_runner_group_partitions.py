"""ConsumerRunner tells the processor the group's partitions after a rebalance (real broker)."""

from __future__ import annotations

import threading
from collections.abc import Collection

import pytest
from kafka import TopicPartition
from support.runner_threads import RunnerThreads

from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.runner import BatchResult, ConsumerRunner, Message

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
