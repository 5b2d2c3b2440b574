"""Consumer/producer settings and topic creation."""

from __future__ import annotations

import pytest

from threefold.core.errors import ConfigError
from threefold.streaming.kafka_config import consumer_config, ensure_topics, producer_config


def test_consumer_defaults_join_fast_and_commit_manually() -> None:
    config = consumer_config("g1")
    assert config["group_id"] == "g1"
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
    assert config["heartbeat_interval_ms"] < config["session_timeout_ms"] <= 10_000
    assert consumer_config("g1", max_poll_interval_ms=60_000)["max_poll_interval_ms"] == 60_000


def test_heartbeat_not_below_session_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError, match="heartbeat_interval_ms=6000 must be below"):
        consumer_config("g", heartbeat_interval_ms=6000)


def test_producer_waits_for_all_replicas() -> None:
    assert producer_config()["acks"] == "all"
    assert producer_config(linger_ms=50)["linger_ms"] == 50


@pytest.mark.integration
def test_ensure_topics_creates_missing_topics_once(kafka_bootstrap, kafka_admin, unique_name):
    a, b = unique_name("a"), unique_name("b")
    assert ensure_topics(kafka_bootstrap, [a, b, a], partitions=2) == [a, b]
    assert ensure_topics(kafka_bootstrap, [a, b], partitions=2) == []
    described = {t["name"]: t for t in kafka_admin.describe_topics([a, b])}
    assert {len(t["partitions"]) for t in described.values()} == {2}
