"""The alerts consumer's settings for a test on the embedded services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threefold.apps.alerts.config import AlertsConfig
from threefold.streaming.kafka_config import ensure_topics


def alerts_test_config(
    kafka_bootstrap: str,
    redis_prefix: str,
    unique_name: Callable[[str], str],
    *,
    input_partitions: int | None = None,
    **settings: Any,
) -> AlertsConfig:
    """This test's own topics, group and Redis prefix, 5-minute windows closed without grace,
    then `settings`. The output topics are created; the input topic too when `input_partitions`
    is given (else the test creates it with the partitions it needs)."""
    config = AlertsConfig(
        **{
            "input_topic": unique_name("news"),
            "scored_topic": unique_name("scored"),
            "alerts_topic": unique_name("alerts"),
            "dead_letter_topic": unique_name("dlq"),
            "group_id": unique_name("group"),
            "window_size_s": 300,
            "grace_s": 0,
            "redis_prefix": redis_prefix,
            "bootstrap_servers": kafka_bootstrap,
            **settings,
        }
    )
    if input_partitions is not None:
        ensure_topics(kafka_bootstrap, [config.input_topic], partitions=input_partitions)
    ensure_topics(
        kafka_bootstrap, [config.scored_topic, config.alerts_topic, config.dead_letter_topic]
    )
    return config
