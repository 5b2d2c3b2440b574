"""The consumer against the real embedded broker and Redis (in-process runner)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from threefold.apps.alerts.consumer import build_runner
from threefold.streaming.kafka_config import ensure_topics

from .conftest import T0, produce, surge_stream, values_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MALFORMED = [
    b"{not json",
    {"id": "no-text", "source": "wire"},
    {"id": "bad-time", "text": "Quantive Software news", "published_at": "next tuesday"},
]


def run_in_thread(runner) -> threading.Thread:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    return thread


def test_messages_in_scored_and_alert_out_and_malformed_to_dead_letter(
    alerts_config, redis_settings, scorer, texts_by_prediction, read_topic
):
    config = alerts_config
    ensure_topics(config.bootstrap_servers, [config.input_topic], partitions=2)
    stream = surge_stream(texts_by_prediction)
    produce(config.bootstrap_servers, config.input_topic, stream[:20] + MALFORMED + stream[20:])
    runner, processor = build_runner(config, redis_settings, scorer=scorer)
    thread = run_in_thread(runner)
    try:
        scored = values_of(read_topic(config.scored_topic, min_count=len(stream), timeout_s=180))
        dead = values_of(read_topic(config.dead_letter_topic, min_count=3, timeout_s=30))
        read_topic(config.alerts_topic, min_count=1, timeout_s=30)
    finally:
        runner.stop()
        thread.join(60)
    alerts = values_of(read_topic(config.alerts_topic))

    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in stream)
    surge_record = next(s for s in scored if s["id"] == "surge-0")
    assert surge_record["sentiment"] == "negative"
    assert "QNTV" in surge_record["entities"]
    assert set(surge_record["models"]) == {"topic", "sentiment"}

    reasons = sorted(d["reason"] for d in dead)
    assert len(reasons) == 3
    assert any("not valid JSON" in r for r in reasons)
    assert any("field 'text'" in r for r in reasons)
    assert any("not ISO 8601" in r for r in reasons)
    assert {d["source_topic"] for d in dead} == {config.input_topic}

    quantive = [a for a in alerts if a["key"] == "entity:QNTV"]
    assert len(quantive) == 1
    evidence = quantive[0]["evidence"]
    assert evidence["negative"] >= config.min_volume
    assert evidence["examples"] and all(isinstance(t, str) for t in evidence["examples"])
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    metric = processor.metrics.registry.get_sample_value
    assert metric("threefold_alerts_messages_invalid_total") == 3
    assert metric("threefold_alerts_messages_scored_total") == len(stream)
    assert metric("threefold_alerts_published_total") == len(alerts)


def test_a_quiet_stream_closes_its_last_window_without_another_message(
    alerts_config, redis_settings, redis_store, scorer, texts_by_prediction
):
    config = dataclasses.replace(alerts_config, quiet_close_s=1.0)
    ensure_topics(config.bootstrap_servers, [config.input_topic])
    calm = texts_by_prediction["calm"]
    # Event times just before the end of the window [T0, T0 + 300); grace 0.
    produce(
        config.bootstrap_servers,
        config.input_topic,
        [{"id": f"q{i}", "text": calm[i], "published_at": T0 + 295 + i} for i in range(4)],
    )
    runner, processor = build_runner(config, redis_settings, scorer=scorer)
    closed = processor.metrics.registry.get_sample_value
    thread = run_in_thread(runner)
    try:
        deadline = time.monotonic() + 60
        while not closed("threefold_alerts_windows_closed_total") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runner.stop()
        thread.join(60)
    store = redis_store
    assert store.open_windows() == []
    keys = store.aggregation_keys()
    assert keys and all([h["total"] for h in store.history(k)] for k in keys)
    assert sum(store.history(k)[0]["total"] for k in keys if k.startswith("topic:")) == 4
