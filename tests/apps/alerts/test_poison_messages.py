"""Hostile messages through AlertsProcessor (in-memory state, no broker): dead-lettered with a
reason, never retried as a batch, never moving the watermark."""

from __future__ import annotations

import json

from support.alerts_setup import NeutralScorer

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.streaming.messages import Message

from .conftest import T0


def _processor() -> tuple[AlertsProcessor, InMemoryStateStore]:
    config = AlertsConfig(window_size_s=300, grace_s=0)
    store = InMemoryStateStore()
    publisher = AlertPublisher(store, producer=None, topic="alerts")  # no alert: never produces
    pipeline = AlertPipeline.from_config(config, store)
    return AlertsProcessor(config, NeutralScorer(), pipeline, publisher), store


def _message(offset: int, value: bytes) -> Message:
    return Message("news", 0, offset, None, value, int(T0 * 1000))


def _news(offset: int, event_time: float) -> Message:
    body = {"id": f"m{offset}", "text": "Quantive Software news", "published_at": event_time}
    return _message(offset, json.dumps(body).encode())


def test_a_far_future_published_at_is_dead_lettered_and_does_not_close_every_window() -> None:
    processor, store = _processor()
    future = b'{"id": "evil", "text": "x", "published_at": "2999-01-01T00:00:00Z"}'
    result = processor.process([_news(0, T0 + 10), _message(1, future), _news(2, T0 + 20)])
    assert [(m.offset, "is later than" in reason) for m, reason in result.failed] == [(1, True)]
    assert store.watermark() == T0 + 20  # not year 2999: the next messages are not late
    later = processor.process([_news(3, T0 + 30)])
    assert [o.value["late"] for o in later.outputs] == [False]
    assert len(store.open_windows()) == 1


def test_hostile_json_is_rejected_in_the_batch_not_raised() -> None:
    """Raised (RecursionError, OverflowError, ...) these made the runner retry the whole batch
    with backoff, then process it message by message."""
    processor, _ = _processor()
    hostile = [
        b'{"text": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"text": "x", "published_at": ' + b"9" * 400 + b"}",
        b'{"text": "x", "published_at": "1e300"}',
        b'{"id": "s", "text": "a\\ud800b"}',
        b'{"text": "x", "score": NaN}',
    ]
    batch = [_message(i, value) for i, value in enumerate(hostile)] + [_news(9, T0)]
    result = processor.process(batch)
    assert sorted(m.offset for m, _ in result.failed) == [0, 1, 2, 3, 4]
    assert [o.value["id"] for o in result.outputs] == ["m9"]
