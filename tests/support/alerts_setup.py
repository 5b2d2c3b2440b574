"""The alerts consumer's settings for a test on the embedded services, a scorer that needs no
model, and consumer heartbeats as the consumer writes them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.scoring import ScoredItem
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.runner import HEARTBEAT_S


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


class NeutralScorer:
    """Scores every headline neutral / legal (for tests where the models are not under test)."""

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        return [
            ScoredItem(item, "legal", "neutral", {"legal": 1.0}, {"neutral": 1.0}, [], {})
            for item in items
        ]


def heartbeat(
    state: str = "running",
    *,
    written_ago_s: float = 0.0,
    polled_ago_s: float | None = 0.0,
    consumer: str = "test-host:1:0123abcd",
    **fields: Any,
) -> dict:
    """A consumer's heartbeat as `AlertsProcessor.on_status` writes it, its times this many
    seconds before now (`polled_ago_s=None`: no poll yet), then `fields`."""
    now = time.time()
    return {
        "consumer": consumer,
        "group": "alerts",
        "state": state,
        "last_poll_at": None if polled_ago_s is None else now - polled_ago_s,
        "down_since": None,
        "retries": 0,
        "reason": "",
        "written_at": now - written_ago_s,
        "interval_s": HEARTBEAT_S,
        **fields,
    }
