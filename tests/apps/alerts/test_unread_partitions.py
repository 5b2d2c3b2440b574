"""Partitions the group no longer reads leave the watermark (`AlertsProcessor.on_group_partitions`,
`unread_partitions`, the stores' `partition_watermarks`), without a broker."""

from __future__ import annotations

import json
import logging

import pytest

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.processor import (
    PARTITION_GONE,
    TOPIC_NOT_READ,
    AlertPublisher,
    AlertsProcessor,
    PreparedBatch,
    unread_partitions,
)
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.state.store import StateStore
from threefold.streaming.messages import Message

from .conftest import T0, Partition, make_scored


def test_unread_partitions_names_each_with_why() -> None:
    known = ["old:0", "news:0", "news:1", "news:3", "gone:0"]
    group = {"news": frozenset({0, 1}), "gone": frozenset()}
    assert unread_partitions(known, group) == {"old:0": TOPIC_NOT_READ, "news:3": PARTITION_GONE}


def _processor() -> tuple[AlertsProcessor, InMemoryStateStore]:
    config = AlertsConfig(window_size_s=300, grace_s=0, quiet_close_s=0)
    store = InMemoryStateStore()
    publisher = AlertPublisher(store, producer=None, topic="alerts")  # no alert: never produces
    pipeline = AlertPipeline.from_config(config, store)
    return AlertsProcessor(config, None, pipeline, publisher), store


def _deliver(processor: AlertsProcessor, topic: str, partition: int, event_time: float) -> None:
    scored = make_scored(f"{topic}-{partition}-{event_time}", event_time, "neutral", entities=())
    message = Message(topic, partition, 0, None, json.dumps({"id": "x"}).encode(), 0)
    processor.apply([message], PreparedBatch(scored=[scored], sources=[message]))


def test_partitions_the_group_no_longer_reads_stop_holding_the_windows(caplog) -> None:
    """The input topic changed from "old" to "news": "old"'s partitions hold the watermark at
    their last event time until the group's partitions are reported; then they are dropped
    (logged with the reason, counted) and the windows the watermark passed close."""
    caplog.set_level(logging.INFO)
    processor, store = _processor()
    processor.on_partitions_assigned([Partition(0, "old")])
    _deliver(processor, "old", 0, T0 + 100)
    processor.on_partitions_revoked([Partition(0, "old")])
    processor.on_partitions_assigned([Partition(0, "news")])
    _deliver(processor, "news", 0, T0 + 700)
    assert store.watermark() == T0 + 100
    assert len(store.open_windows()) == 2

    processor.on_group_partitions({"news": frozenset({0, 1})})

    assert store.partition_watermarks() == {"news:0": T0 + 700}
    assert store.watermark() == T0 + 700
    assert [w.start for w in store.open_windows()] == [T0 + 600]
    (record,) = [r for r in caplog.records if "dropped input partition" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.fields == {  # type: ignore[attr-defined]
        "event": "watermark_partitions_dropped",
        "partitions": {"old:0": TOPIC_NOT_READ},
        "their_watermarks": {"old:0": T0 + 100},
        "input_partitions": {"news": [0, 1]},
        "watermark": T0 + 700,
    }
    metric = processor.metrics.registry.get_sample_value
    dropped = "threefold_alerts_watermark_partitions_dropped_total"
    assert metric(dropped, {"reason": TOPIC_NOT_READ}) == 1
    assert metric("threefold_alerts_windows_closed_total") == 1
    assert metric("threefold_alerts_watermark_seconds") == T0 + 700


def test_partitions_the_group_reads_are_kept_whoever_owns_them(caplog) -> None:
    """Another replica's partitions, and those of a topic the broker lists without partitions
    (being recreated), still count: nothing is dropped or logged."""
    caplog.set_level(logging.INFO)
    processor, store = _processor()
    store.advance_watermark({"news:0": T0, "news:1": T0 + 50, "other:0": T0 + 10})
    processor.on_partitions_assigned([Partition(0, "news")])
    processor.on_group_partitions({"news": frozenset({0, 1}), "other": frozenset()})
    assert set(store.partition_watermarks()) == {"news:0", "news:1", "other:0"}
    assert not [r for r in caplog.records if "dropped input partition" in r.getMessage()]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request) -> StateStore:
    if request.param == "memory":
        return InMemoryStateStore()
    return request.getfixturevalue("redis_store")


def test_partition_watermarks_are_those_in_the_minimum(store: StateStore) -> None:
    assert store.partition_watermarks() == {}
    store.advance_watermark({"news:0": 0.0, "news:1": T0 + 0.5})
    store.advance_watermark({"news:0": T0}, idle=["news:1"])
    assert store.partition_watermarks() == {"news:0": T0}


def test_a_partition_this_consumer_reads_is_kept_whatever_stale_metadata_says() -> None:
    """Partitions just added: the broker that answered may list fewer than the group assigned."""
    processor, store = _processor()
    processor.on_partitions_assigned([Partition(0, "news"), Partition(2, "news")])
    _deliver(processor, "news", 0, T0 + 700)
    processor.on_group_partitions({"news": frozenset({0, 1})})  # stale: no partition 2 yet
    assert set(store.partition_watermarks()) == {"news:0", "news:2"}
