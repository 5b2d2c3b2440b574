"""The consumer lag gauge and the processor's backlog report on the real embedded broker: every
assigned partition has its lag from the start of a backlog, fetched or not, and it grows while
a dependency outage keeps the partitions paused (nothing is fetched then)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping

import pytest
from kafka import KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from support.runner_threads import RunnerThreads

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.runner import BatchResult, ConsumerRunner, Message

pytestmark = pytest.mark.integration
SAFETY_S = 30
PARTITIONS = 4


class Gate:
    """Processes nothing while `down` (a dependency outage); records the runner's backlogs."""

    def __init__(self) -> None:
        self.down = True
        self.backlogs: list[dict[TopicPartition, int | None]] = []

    def process(self, batch: list[Message]) -> BatchResult:
        if self.down:
            raise ServiceError("the dependency is away")
        return BatchResult(outputs=[])

    def on_idle(self) -> None:
        """The outage's retry: fails while `down`, so the partitions stay paused (unfetched)."""
        if self.down:
            raise ServiceError("the dependency is away")

    def on_backlog(self, unread: Mapping[TopicPartition, int | None]) -> None:
        self.backlogs.append(dict(unread))


class Held:
    """Prepares nothing until `release` is set: the first batch of a backlog stays in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def prepare(self, batch: list[Message]) -> None:
        self.release.wait()

    def apply(self, batch: list[Message], prepared: None) -> BatchResult:
        return BatchResult(outputs=[])

    def process(self, batch: list[Message]) -> BatchResult:
        return BatchResult(outputs=[])


def _produce(bootstrap: str, topic: str, per_partition: int) -> None:
    """One record per producer batch: the embedded tansu broker answers a ListOffsets request
    for the end offset with the last batch's first offset + 1 (Kafka: after its last record)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for partition in range(PARTITIONS):
        for i in range(per_partition):
            producer.send(topic, json.dumps({"n": i}).encode(), partition=partition)
            producer.flush()
    producer.close()


def _runner(
    kafka_bootstrap: str, unique_name, processor: object, src: str
) -> tuple[ConsumerRunner, Callable[[], list[float | None]]]:
    """A runner of `src` with small batches, and its lag gauge's value per partition."""
    ensure_topics(kafka_bootstrap, [src], partitions=PARTITIONS)
    registry = CollectorRegistry()
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=unique_name("g"),
        processor=processor,
        dead_letter_topic=unique_name("dlq"),
        max_batch=8,
        max_wait_ms=50,
        max_reconnect_backoff_ms=2000,
        metrics_registry=registry,
    )

    def lags() -> list[float | None]:
        return [
            registry.get_sample_value(
                "threefold_stream_consumer_lag", {"topic": src, "partition": str(p)}
            )
            for p in range(PARTITIONS)
        ]

    return runner, lags


def test_every_partition_has_its_lag_from_the_start_of_a_backlog(
    kafka_bootstrap, unique_name
) -> None:
    """The first batch is being worked on: the partitions not fetched yet show their lag too
    (the high watermark alone, known only from fetches, left them without a series)."""
    src = unique_name("src")
    processor = Held()
    runner, lags = _runner(kafka_bootstrap, unique_name, processor, src)
    _produce(kafka_bootstrap, src, 30)
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(lambda: lags() == [30] * PARTITIONS, "lag 30 on each partition")
        processor.release.set()
        running.wait_for(
            lambda: runner.stats.processed == 120 and lags() == [0] * PARTITIONS,
            "the backlog processed, lag 0 on each partition",
        )
    finally:
        processor.release.set()
        running.stop_all()
    assert not running.errors


def test_lag_grows_while_a_dependency_outage_keeps_the_partitions_paused(
    kafka_bootstrap, unique_name
) -> None:
    src = unique_name("src")
    processor = Gate()
    runner, lags = _runner(kafka_bootstrap, unique_name, processor, src)
    _produce(kafka_bootstrap, src, 30)
    partitions = [TopicPartition(src, p) for p in range(PARTITIONS)]
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        # Nothing processed: each partition's whole backlog, the ones never fetched included.
        running.wait_for(lambda: lags() == [30] * PARTITIONS, "lag 30 on each partition")
        assert runner.status().state == "dependency_down"
        assert processor.backlogs[-1] == dict.fromkeys(partitions, 30)

        _produce(kafka_bootstrap, src, 20)  # arrives while the partitions are paused
        running.wait_for(lambda: lags() == [50] * PARTITIONS, "lag 50 on each partition")
        assert runner.stats.processed == 0

        processor.down = False
        running.wait_for(
            lambda: runner.stats.processed == 200 and lags() == [0] * PARTITIONS,
            "the backlog processed, lag 0 on each partition",
        )
        assert processor.backlogs[-1] == dict.fromkeys(partitions, 0)
    finally:
        running.stop_all()
    assert not running.errors


def test_the_broker_is_asked_for_end_offsets_per_interval_not_per_batch(
    kafka_bootstrap, unique_name, monkeypatch
) -> None:
    """Each committed batch asked the broker for the end offsets (a ListOffsets round trip on
    the consumer thread, under its lock): 7x slower with a broker 50 ms slow to answer. Now a
    commit recomputes the counts from the offsets known; the broker is asked every
    LAG_INTERVAL_S (here never again) and when a partition's records resume."""
    from kafka import KafkaConsumer

    from threefold.streaming import runner as runner_module

    asked = []
    end_offsets = KafkaConsumer.end_offsets

    def counted(self, *args, **kwargs):
        asked.append(1)
        return end_offsets(self, *args, **kwargs)

    monkeypatch.setattr(KafkaConsumer, "end_offsets", counted)
    monkeypatch.setattr(runner_module, "LAG_INTERVAL_S", 1e9)
    src = unique_name("src")
    processor = Held()
    processor.release.set()
    runner, lags = _runner(kafka_bootstrap, unique_name, processor, src)
    _produce(kafka_bootstrap, src, 30)
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(
            lambda: runner.stats.processed == 120 and lags() == [0] * PARTITIONS,
            "the backlog processed, lag 0 on each partition",
        )
    finally:
        running.stop_all()
    assert not running.errors
    assert runner.stats.batches >= 15  # batches of at most 8
    assert len(asked) <= PARTITIONS + 1  # the first records of each partition, at most
