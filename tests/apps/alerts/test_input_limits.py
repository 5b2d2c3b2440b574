"""Oversized input fields on the real broker and Redis: dead-lettered up front with the field,
its limit and what was found, under the input's own topic and offset, and never counted on the
dashboard (a 5 MB headline used to be counted, listed, then dead-lettered as an output)."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer
from support.alerts_setup import NeutralScorer, alerts_test_config
from support.runner_threads import RunnerThreads

from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.resources import open_signal_store

from .conftest import T0

pytestmark = pytest.mark.integration
SAFETY_S = 60
HUGE = 5_000_000


def test_oversized_fields_are_dead_lettered_by_input_position_and_never_counted(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name, read_topic
) -> None:
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    messages = [
        {"id": "ok-1", "text": "Quantive news", "published_at": T0},
        {"id": "huge", "text": "Quantive news", "pad": "x" * HUGE},  # no published_at
        {"id": "i" * 300, "text": "Quantive news", "published_at": T0},
        {"id": "entity", "text": "Quantive news", "entities": ["Q" * 1000]},
        {"id": "extra", "text": "Quantive news", "blob": "b" * 100_000},
        {"id": "ok-2", "text": "Quantive news", "published_at": T0 + 1},
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * HUGE)
    for body in messages:
        producer.send(config.input_topic, json.dumps(body).encode())
    producer.flush()
    producer.close()
    runner, processor = build_runner(config, redis_settings, scorer=NeutralScorer())
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(
            lambda: runner.stats.processed + runner.stats.dead_lettered >= 6, "every message"
        )
    finally:
        running.stop_all()
        processor.publisher.close()

    assert not running.errors
    dead = sorted(
        (json.loads(r.value) for r in read_topic(config.dead_letter_topic, min_count=4)),
        key=lambda d: d["offset"],
    )
    assert [(d["source_topic"], d["offset"], d["error_type"]) for d in dead] == [
        (config.input_topic, offset, "rejected") for offset in (1, 2, 3, 4)
    ]
    assert "at most 262144" in dead[0]["reason"]
    assert "field 'id' has 300 characters, at most 200" in dead[1]["reason"]
    assert "field 'entities' has an item of 1000 characters, at most 64" in dead[2]["reason"]
    assert "100011 bytes of JSON in all, at most 16384 (the largest: 'blob'" in dead[3]["reason"]
    scored = [json.loads(r.value)["id"] for r in read_topic(config.scored_topic, min_count=2)]
    assert scored == ["ok-1", "ok-2"]
    signals = open_signal_store(config, redis_settings)
    assert sorted(r["id"] for r in signals.recent_scored()) == ["ok-1", "ok-2"]
    store = processor.pipeline.store
    assert all(not key.startswith("entity:QQQ") for key in store.aggregation_keys())
    assert sum(w.total for w in store.open_windows("topic:legal")) == 2
