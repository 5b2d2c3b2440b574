"""The input topic changed, or recreated with fewer partitions, under the same Redis prefix:
the partitions the group no longer reads leave the watermark, so windows close again (real
broker and Redis, neutral scorer)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from support.alerts_setup import NeutralScorer, alerts_test_config
from support.runner_threads import RunnerThreads

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.processor import AlertsProcessor
from threefold.apps.alerts.resources import open_state_store
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.streaming.kafka_config import ensure_topics

from .conftest import T0

pytestmark = pytest.mark.integration
SAFETY_S = 45

SETTINGS = {  # an input topic with 2 partitions
    "input_partitions": 2,
    "quiet_close_s": 0,
    "max_batch": 8,
    "max_wait_ms": 50,
}


def _produce(bootstrap: str, topic: str, events: list[tuple[int, float]]) -> None:
    """One headline per (partition, event time)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for partition, event_time in events:
        body = {"id": f"{topic}-{event_time}", "text": "news", "published_at": event_time}
        producer.send(topic, json.dumps(body).encode(), partition=partition)
    producer.flush()
    producer.close()


@contextmanager
def _consumers(
    config: AlertsConfig,
    redis_settings,
    *,
    replicas: int = 1,
    wrap: Callable[[int, AlertsProcessor], None] | None = None,
) -> Iterator[tuple[RunnerThreads, list[AlertsProcessor]]]:
    """`replicas` consumers of `config` on threads, stopped when the block ends."""
    built = [build_runner(config, redis_settings, scorer=NeutralScorer()) for _ in range(replicas)]
    for index, (_, processor) in enumerate(built):
        if wrap is not None:
            wrap(index, processor)
    running = RunnerThreads(SAFETY_S)
    for runner, _ in built:
        running.start(runner)
    try:
        yield running, [processor for _, processor in built]
    finally:
        running.stop_all()
        for _, processor in built:
            processor.publisher.close()
    assert not running.errors, running.errors


def _run_until(config: AlertsConfig, redis_settings, watermark: float) -> AlertsProcessor:
    """Run one consumer of `config` until the store's watermark is `watermark`."""
    store = open_state_store(config, redis_settings)
    with _consumers(config, redis_settings) as (running, (processor,)):
        running.wait_for(lambda: store.watermark() == watermark, f"watermark {watermark}")
    return processor


def _closed(store: RedisStateStore) -> list[int]:
    """Start of each closed window."""
    return [w["start"] for w in store.history("topic:legal")]


def _dropped(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The fields of the watermark_partitions_dropped log lines."""
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "watermark_partitions_dropped"
    ]


def test_after_the_input_topic_is_changed_the_old_topics_partitions_no_longer_hold_windows(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name, caplog
) -> None:
    """The operator points the consumer at a new topic, same Redis prefix: the old topic's
    partitions are never assigned again, so they must leave the watermark (once, logged and
    counted), or it stays at their last event time and no window closes again, silently."""
    caplog.set_level(logging.INFO)
    old = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, **SETTINGS
    )  # input topic with 2 partitions
    store = open_state_store(old, redis_settings)
    _produce(kafka_bootstrap, old.input_topic, [(i % 2, T0 + i * 20) for i in range(30)])
    _run_until(old, redis_settings, T0 + 560)
    assert _closed(store) == [T0]
    new = dataclasses.replace(old, input_topic=unique_name("news-renamed"))
    ensure_topics(kafka_bootstrap, [new.input_topic], partitions=2)
    _produce(kafka_bootstrap, new.input_topic, [(i % 2, T0 + 600 + i * 20) for i in range(45)])

    processor = _run_until(new, redis_settings, T0 + 1460)

    assert _closed(store) == [T0, T0 + 300, T0 + 600, T0 + 900]
    assert set(store.partition_watermarks()) == {f"{new.input_topic}:{p}" for p in (0, 1)}
    (logged,) = _dropped(caplog)
    assert logged["partitions"] == {f"{old.input_topic}:{p}": "topic_not_read" for p in (0, 1)}
    assert logged["input_partitions"] == {new.input_topic: [0, 1]}
    metric = processor.metrics.registry.get_sample_value
    labels = {"reason": "topic_not_read"}
    assert metric("threefold_alerts_watermark_partitions_dropped_total", labels) == 2


def test_partitions_gone_after_the_topic_is_recreated_with_fewer_no_longer_hold_windows(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name, caplog
) -> None:
    """The input topic is deleted and recreated with one partition instead of three: the two
    partitions it no longer has leave the watermark; the one it still has stays."""
    caplog.set_level(logging.INFO)
    topic = unique_name("news-recreated")
    config = dataclasses.replace(
        alerts_test_config(kafka_bootstrap, redis_prefix, unique_name, **SETTINGS),
        input_topic=topic,
    )
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    store = open_state_store(config, redis_settings)
    _produce(kafka_bootstrap, topic, [(i % 3, T0 + i * 20) for i in range(30)])
    _run_until(config, redis_settings, T0 + 540)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    deadline = time.monotonic() + SAFETY_S
    while not ensure_topics(kafka_bootstrap, [topic], partitions=1):  # still listed: wait
        assert time.monotonic() < deadline, f"{topic} was not deleted"
        time.sleep(0.2)
    _produce(kafka_bootstrap, topic, [(0, T0 + 600 + i * 20) for i in range(45)])

    _run_until(config, redis_settings, T0 + 1480)

    assert _closed(store) == [T0, T0 + 300, T0 + 600, T0 + 900]
    assert set(store.partition_watermarks()) == {f"{topic}:0"}
    (logged,) = _dropped(caplog)
    assert logged["partitions"] == {f"{topic}:1": "partition_gone", f"{topic}:2": "partition_gone"}


def test_replicas_keep_each_others_partitions_and_drop_only_unread_ones(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name, caplog
) -> None:
    """Two replicas, one partition each, and an entry an earlier input topic left: each replica
    knows the group's partitions from the broker, not only its own assignment, so it drops the
    earlier topic's entry and keeps the partition the other replica owns."""
    caplog.set_level(logging.INFO)
    config = alerts_test_config(kafka_bootstrap, redis_prefix, unique_name, **SETTINGS)
    store = open_state_store(config, redis_settings)
    store.advance_watermark({"news-before:0": T0 + 100})
    assigned: list[set[int]] = [set(), set()]
    reports: list[list[tuple[set[int], dict]]] = [[], []]  # (assigned then, group partitions)

    def wrap(index: int, processor: AlertsProcessor) -> None:
        on_assigned, on_group = processor.on_partitions_assigned, processor.on_group_partitions

        def assigned_hook(partitions) -> None:
            assigned[index] = {tp.partition for tp in partitions}
            on_assigned(partitions)

        def group_hook(partitions) -> None:
            on_group(partitions)
            reports[index].append((set(assigned[index]), dict(partitions)))

        processor.on_partitions_assigned = assigned_hook  # type: ignore[method-assign]
        processor.on_group_partitions = group_hook  # type: ignore[method-assign]

    with _consumers(config, redis_settings, replicas=2, wrap=wrap) as (running, _):
        one_each = [[0], [1]]
        running.wait_for(lambda: sorted(map(sorted, assigned)) == one_each, "a partition each")
        _produce(kafka_bootstrap, config.input_topic, [(i % 2, T0 + i * 20) for i in range(40)])
        running.wait_for(lambda: store.watermark() == T0 + 760, "watermark T0 + 760")
        # Each reported the group's partitions after its last assignment: both kept both.
        running.wait_for(lambda: [r[-1][0] if r else None for r in reports] == assigned, "reports")

    assert _closed(store) == [T0, T0 + 300]
    assert [r[-1][1] for r in reports] == [{config.input_topic: frozenset({0, 1})}] * 2
    assert set(store.partition_watermarks()) == {f"{config.input_topic}:{p}" for p in (0, 1)}
    assert {name for fields in _dropped(caplog) for name in fields["partitions"]} == {
        "news-before:0"
    }
