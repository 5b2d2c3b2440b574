"""A burst after the consumer has been idle (every partition dropped from the watermark) gives
the same alerts, and no late message, as a consumer started after the data: a partition with
records still to read is never idle, whatever the time since its last message (real broker and
Redis, 4 partitions, a keyword scorer)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from kafka import KafkaProducer
from support.alerts_setup import alerts_test_config
from support.runner_threads import RunnerThreads

from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.scoring import ScoredItem
from threefold.apps.alerts.surge import alert_id

from .conftest import T0

pytestmark = pytest.mark.integration
SAFETY_S = 60
PARTITIONS = 4
WINDOW_S = 300
WINDOWS = 10
SURGES = (4, 8)  # windows where 14 of 16 headlines are negative
PER_WINDOW = 16


class KeywordScorer:
    """ "plunge" is negative, anything else neutral; every headline is about law."""

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        out = []
        for item in items:
            sentiment = "negative" if "plunge" in item.text else "neutral"
            models = {"topic": "kw", "sentiment": "kw"}
            out.append(
                ScoredItem(item, "legal", sentiment, {"legal": 1.0}, {sentiment: 1.0}, [], models)
            )
        return out


def _headlines() -> list[dict]:
    """Ten windows of news in event-time order (surges in SURGES), then one headline per
    partition two windows after the last, which closes every window."""
    rows = []
    for w in range(WINDOWS):
        for i in range(PER_WINDOW):
            negative = i < PER_WINDOW - 2 if w in SURGES else i == 0
            rows.append(
                {
                    "id": f"m-{w}-{i}",
                    "text": f"ACME shares {'plunge' if negative else 'steady'} {w}/{i}",
                    "published_at": T0 + w * WINDOW_S + i * (WINDOW_S / PER_WINDOW),
                }
            )
    closing = T0 + (WINDOWS + 2) * WINDOW_S
    rows += [
        {"id": f"closing-{p}", "text": "ACME steady", "published_at": closing + p}
        for p in range(PARTITIONS)
    ]
    return rows


def _produce(bootstrap: str, topic: str, rows: list[dict]) -> None:
    """Round robin over the partitions, in event-time order, as one burst."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for index, row in enumerate(rows):
        producer.send(topic, json.dumps(row).encode(), partition=index % PARTITIONS)
    producer.flush()
    producer.close()


def _expected_alerts() -> set[str]:
    """The topic's surge windows (the scorer names no entities)."""
    starts = [T0 + w * WINDOW_S for w in SURGES]
    return {alert_id("topic:legal", start, start + WINDOW_S) for start in starts}


@pytest.mark.parametrize("consumer_waits", [False, True], ids=["started-after", "waiting-idle"])
def test_a_burst_after_an_idle_spell_alerts_like_a_backlog(
    consumer_waits, kafka_bootstrap, redis_settings, redis_prefix, unique_name, read_topic
) -> None:
    config = alerts_test_config(
        kafka_bootstrap,
        redis_prefix,
        unique_name,
        input_partitions=PARTITIONS,
        min_volume=8,
        cooldown_s=0,
        partition_idle_s=1,  # every partition goes idle while the consumer waits
        quiet_close_s=0,
        max_batch=16,
        max_wait_ms=50,
    )
    rows = _headlines()
    runner, processor = build_runner(config, redis_settings, scorer=KeywordScorer())
    store = processor.pipeline.store
    running = RunnerThreads(SAFETY_S)
    try:
        if not consumer_waits:
            _produce(kafka_bootstrap, config.input_topic, rows)
        running.start(runner)
        if consumer_waits:
            running.wait_for(lambda: len(store.partition_watermarks()) == PARTITIONS, "assigned")
            running.wait_for(lambda: store.partition_watermarks() == {}, "all partitions idle")
            _produce(kafka_bootstrap, config.input_topic, rows)
        running.wait_for(lambda: runner.stats.processed == len(rows), "every headline processed")
        alerts = read_topic(config.alerts_topic, min_count=len(_expected_alerts()))
    finally:
        running.stop_all()
        processor.publisher.close()
    assert not running.errors
    late = processor.metrics.registry.get_sample_value("threefold_alerts_messages_late_total")
    assert late == 0
    assert {json.loads(record.value)["alert_id"] for record in alerts} == _expected_alerts()
