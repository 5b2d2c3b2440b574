"""A stream gone quiet closes its last windows (AlertsProcessor.on_idle, fake clock)."""

from __future__ import annotations

import json

import pytest
import redis

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor, PreparedBatch
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.core.errors import ServiceError
from threefold.streaming.messages import Message

from .conftest import T0, Clock, Partition, make_scored, memory_processor


def _processor(quiet_close_s: float) -> tuple[AlertsProcessor, InMemoryStateStore, Clock]:
    config = AlertsConfig(window_size_s=300, grace_s=30, quiet_close_s=quiet_close_s)
    return memory_processor(config)


def _deliver(processor: AlertsProcessor, event_time: float) -> None:
    scored = make_scored("m1", event_time, "neutral")
    message = Message("news", 0, 7, b"m1", json.dumps({"id": "m1"}).encode(), 0)
    processor.apply([message], PreparedBatch(scored=[scored], sources=[message]))


def test_after_the_quiet_period_event_time_runs_on_with_the_wall_clock() -> None:
    processor, store, clock = _processor(quiet_close_s=60)
    _deliver(processor, T0 + 250)  # partition 0 only; partition 1 never delivers
    clock.now += 59
    processor.on_idle()
    assert len(store.open_windows()) == 2  # not quiet for long enough yet
    clock.now += 21  # 80 s after the last message: event clock T0 + 250 - 30 + 80 = T0 + 300
    processor.on_idle()
    assert store.open_windows() == []
    assert store.watermark() == T0 + 300
    metric = processor.metrics.registry.get_sample_value
    assert metric("threefold_alerts_windows_closed_total") == 2


def test_quiet_close_off_waits_for_the_next_message() -> None:
    processor, store, clock = _processor(quiet_close_s=0)
    _deliver(processor, T0 + 250)
    clock.now += 3600
    processor.on_idle()
    assert len(store.open_windows()) == 2


class FlakyStore(InMemoryStateStore):
    """Its next `advance_watermark` fails like a Redis timeout, once."""

    fail_next = False

    def advance_watermark(self, by_partition, idle=()):
        if self.fail_next:
            self.fail_next = False
            raise redis.TimeoutError("Timeout reading from socket")
        return super().advance_watermark(by_partition, idle)


def test_an_idle_partition_is_dropped_even_when_the_first_attempt_failed() -> None:
    """The runner retries a batch whose state update failed; the silent partition found idle
    in the failed attempt must still be dropped by the retry, or it holds the watermark back
    until its next message (no window closes meanwhile)."""
    config = AlertsConfig(window_size_s=300, grace_s=0, partition_idle_s=30, quiet_close_s=0)
    store, clock = FlakyStore(), Clock()
    publisher = AlertPublisher(store, producer=None, topic="alerts")
    processor = AlertsProcessor(
        config, None, AlertPipeline.from_config(config, store), publisher, clock=clock
    )
    processor.on_partitions_assigned([Partition(0), Partition(1)])  # 1 stays silent
    clock.now += 31
    scored = make_scored("m1", T0 + 400, "neutral")
    message = Message("news", 0, 7, b"m1", json.dumps({"id": "m1"}).encode(), 0)
    store.fail_next = True
    with pytest.raises(ServiceError):
        processor.apply([message], PreparedBatch(scored=[scored], sources=[message]))
    processor.apply([message], PreparedBatch(scored=[scored], sources=[message]))  # the retry
    assert store.watermark() == T0 + 400
    processor.on_idle()
    assert store.watermark() == T0 + 400
