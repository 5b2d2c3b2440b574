"""Consumer-group faults on the real broker and Redis, with a neutral scorer (no model)."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer
from support.alerts_setup import NeutralScorer, alerts_test_config
from support.runner_threads import RunnerThreads

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.state.redis_store import RedisStateStore

from .conftest import T0

pytestmark = pytest.mark.integration
SAFETY_S = 60


def _config(kafka_bootstrap: str, redis_prefix: str, unique_name, **overrides) -> AlertsConfig:
    settings = {"quiet_close_s": 0, "max_batch": 8, "max_wait_ms": 50, **overrides}
    return alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=2, **settings
    )


def test_a_consumer_whose_only_partition_is_silent_does_not_hold_the_watermark_forever(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name
) -> None:
    """Two consumers, one partition each; news only on partition 1. The consumer of the silent
    partition 0 never gets a batch, so it must report its partition idle between messages,
    or that partition holds the group's watermark at its registration value for good and no
    window ever closes (no final surge decision, no early alert after the first window)."""
    config = _config(kafka_bootstrap, redis_prefix, unique_name, partition_idle_s=1.0)
    built = [build_runner(config, redis_settings, scorer=NeutralScorer()) for _ in range(2)]
    assigned: list[set[int]] = [set(), set()]
    for index, (_, processor) in enumerate(built):
        original = processor.on_partitions_assigned

        def on_assigned(partitions, index=index, original=original) -> None:
            assigned[index] = {tp.partition for tp in partitions}
            original(partitions)

        processor.on_partitions_assigned = on_assigned  # type: ignore[method-assign]
    running = RunnerThreads(SAFETY_S)
    for runner, _ in built:
        running.start(runner)
    store: RedisStateStore = built[0][1].pipeline.store  # type: ignore[assignment]
    try:
        running.wait_for(lambda: sorted(map(sorted, assigned)) == [[0], [1]], "one partition each")
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for i in range(40):  # event time T0 .. T0 + 780: the first two windows are due
            body = {"id": f"m{i}", "text": "Quantive news", "published_at": T0 + i * 20}
            producer.send(config.input_topic, json.dumps(body).encode(), partition=1)
        producer.flush()
        producer.close()
        running.wait_for(lambda: len(store.history("topic:legal")) == 2, "two windows closed")
    finally:
        running.stop_all()
        for _, processor in built:
            processor.publisher.close()
    assert not running.errors, running.errors
    assert store.watermark() == T0 + 780
    assert [w["total"] for w in store.history("topic:legal")] == [15, 15]
