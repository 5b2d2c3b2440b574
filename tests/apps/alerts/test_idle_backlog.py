"""A partition with records still to read never leaves the watermark as idle, and one dropped
as idle holds it again once records arrive for it (AlertsProcessor with the runner's backlog
report, in-memory state, fake clock)."""

from __future__ import annotations

import json

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.processor import AlertsProcessor, PreparedBatch
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.streaming.messages import Message

from .conftest import T0, Clock, Partition, make_scored, memory_processor

NAMES = ("news:0", "news:1")


def _processor(**settings: float) -> tuple[AlertsProcessor, InMemoryStateStore, Clock]:
    config = AlertsConfig(window_size_s=300, grace_s=0, partition_idle_s=30, **settings)
    return memory_processor(config)


def _backlog(processor: AlertsProcessor, *unread: int) -> None:
    processor.on_backlog({Partition(p): n for p, n in enumerate(unread)})


def _deliver(processor: AlertsProcessor, partition: int, event_time: float) -> None:
    name = f"m{event_time}"
    scored = make_scored(name, event_time, "neutral")
    message = Message("news", partition, 7, name.encode(), json.dumps({"id": name}).encode(), 0)
    processor.apply([message], PreparedBatch(scored=[scored], sources=[message]))


def test_a_partition_with_unread_records_is_never_idle() -> None:
    processor, store, clock = _processor(quiet_close_s=0)
    _deliver(processor, 1, T0 + 100)
    _backlog(processor, 0, 40)  # partition 1 has 40 records the consumer has not read yet
    clock.now += 3600
    _deliver(processor, 0, T0 + 900)
    assert set(store.partition_watermarks()) == set(NAMES)
    assert store.watermark() == T0 + 100  # held by partition 1's last message

    _backlog(processor, 0, 0)  # caught up: idle after partition_idle_s without a message
    processor.on_idle()
    assert set(store.partition_watermarks()) == {"news:0"}


def test_a_partition_dropped_as_idle_holds_the_watermark_again_when_records_arrive() -> None:
    processor, store, clock = _processor(quiet_close_s=0)
    _backlog(processor, 0, 0)
    clock.now += 31
    processor.on_idle()
    assert store.partition_watermarks() == {}  # both idle: a quiet stream

    # A burst: partition 0 is fetched first, partition 1's records wait to be read.
    _backlog(processor, 0, 16)
    _deliver(processor, 0, T0 + 900)
    assert set(store.partition_watermarks()) == set(NAMES)
    assert store.watermark() < T0 + 100  # partition 1 holds it until its first message
    _deliver(processor, 1, T0 + 100)  # not late
    assert store.watermark() == T0 + 100
    assert processor.metrics.registry.get_sample_value("threefold_alerts_messages_late_total") == 0


def test_quiet_close_leaves_a_partition_with_unread_records_where_it_is() -> None:
    """A long outage of a dependency pauses the partitions while news arrives: when it ends,
    the stream is not quiet, whatever the time since the last message."""
    processor, store, clock = _processor(quiet_close_s=60)
    _deliver(processor, 0, T0 + 100)
    _deliver(processor, 1, T0 + 100)
    _backlog(processor, 0, 25)
    clock.now += 600
    processor.on_idle()
    assert store.watermark() == T0 + 100
    assert store.partition_watermarks()["news:1"] == T0 + 100


def test_a_partition_whose_count_is_unknown_goes_idle_by_time_alone() -> None:
    """The broker not answering for a partition's end offset (its leader offline) must not hold
    the group's windows open for as long as that lasts: the time since its last message
    decides, as it did before counts."""
    processor, store, clock = _processor(quiet_close_s=0)
    _deliver(processor, 1, T0 + 100)
    processor.on_backlog({Partition(0): 0, Partition(1): None})
    clock.now += 3600
    _deliver(processor, 0, T0 + 900)
    assert set(store.partition_watermarks()) == {"news:0"}
