"""The alerts consumer through a Redis outage (its own real redis-server, frozen with SIGSTOP
for longer than the client's socket timeout, then resumed) on the real broker: it backs off
and retries for as long as the outage lasts, commits nothing meanwhile, says so in its metrics,
log and heartbeat, and goes on consuming once Redis answers again."""

from __future__ import annotations

import logging

import pytest
import redis as redis_lib
from support.alerts_setup import NeutralScorer, alerts_test_config
from support.runner_threads import RunnerThreads
from support.services import frozen

from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.resources import open_signal_store
from threefold.core.settings import Secret
from threefold.streaming.connections import RedisSettings
from threefold.streaming.runner import DependencyRefused

from .conftest import T0, produce

pytestmark = pytest.mark.integration
SAFETY_S = 60
REDIS_TIMEOUT_S = 1  # the consumer's socket timeout: a frozen Redis fails each call after it


@pytest.fixture
def outage_setup(kafka_bootstrap, hung_redis, redis_prefix, unique_name, caplog):
    """(config, runner, processor, signals, running) on a Redis this test freezes."""
    caplog.set_level(logging.INFO, logger="threefold.streaming.runner")
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    redis = RedisSettings(url=f"{hung_redis.url}?socket_timeout={REDIS_TIMEOUT_S}")
    runner, processor = build_runner(config, redis, scorer=NeutralScorer())
    signals = open_signal_store(config, redis)
    running = RunnerThreads(SAFETY_S)
    try:
        yield config, runner, processor, signals, running
    finally:
        running.stop_all()
        processor.publisher.close()


def _news(message_id: str, offset_s: int) -> dict:
    return {"id": message_id, "text": "Quantive Software news", "published_at": T0 + offset_s}


def _events(caplog, event: str) -> list[dict]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == event]


def _metric(runner, name: str) -> float:
    return runner.metrics.registry.get_sample_value(name) or 0.0


def test_an_idle_consumer_outlives_a_redis_pause_and_processes_news_after_it(
    outage_setup, hung_redis, kafka_bootstrap, caplog
) -> None:
    """The probe's defect: the idle hook's first Redis timeout stopped the consumer for good."""
    config, runner, processor, signals, running = outage_setup
    store = processor.pipeline.store
    running.start(runner)
    running.wait_for(
        lambda: store.heartbeats().get(processor.consumer_id, {}).get("state") == "running",
        "the consumer's first heartbeat",
    )
    with frozen(hung_redis):
        running.wait_for(lambda: len(_events(caplog, "dependency_retry")) >= 2, "two retries")
        assert runner.status().state == "dependency_down"
        assert _metric(runner, "threefold_stream_dependency_down_since_seconds") > 0
    produce(kafka_bootstrap, config.input_topic, [_news("after", 10)])
    running.wait_for(lambda: signals.scored_message("after") is not None, "news after the pause")

    assert not running.errors
    assert runner.status().state == "running"
    assert _metric(runner, "threefold_stream_dependency_retries_total") >= 2
    assert _metric(runner, "threefold_stream_dependency_down_since_seconds") == 0
    (recovered,) = _events(caplog, "dependency_recovered")
    assert recovered["retries"] >= 2
    retry = _events(caplog, "dependency_retry")[0]
    assert "Redis state store failed" in retry["error"] and retry["delay_s"] > 0
    running.wait_for(
        lambda: store.heartbeats()[processor.consumer_id]["down_since"] is None,
        "a heartbeat after the outage",
    )
    beat = store.heartbeats()[processor.consumer_id]
    assert beat["state"] == "running" and beat["group"] == config.group_id
    assert beat["last_poll_at"] <= beat["written_at"]


def test_a_batch_that_meets_a_redis_pause_is_processed_once_redis_is_back(
    outage_setup, hung_redis, kafka_bootstrap, caplog, read_topic
) -> None:
    config, runner, _, signals, running = outage_setup
    running.start(runner)
    running.wait_for(lambda: runner.status().state == "running", "the consumer to poll")
    with frozen(hung_redis):
        produce(kafka_bootstrap, config.input_topic, [_news("during", 10)])
        running.wait_for(lambda: runner.stats.batches == 0 and runner.status().retries >= 2, "")
    produce(kafka_bootstrap, config.input_topic, [_news("after", 20)])
    running.wait_for(lambda: runner.stats.processed >= 2, "both headlines processed")

    assert not running.errors
    assert runner.status().state == "running"
    assert signals.scored_message("during") and signals.scored_message("after")
    scored = [r.value for r in read_topic(config.scored_topic, min_count=2)]
    assert [b'"during"' in v for v in scored] == [True, False]  # in order, nothing skipped
    assert read_topic(config.dead_letter_topic, timeout_s=2) == []  # nothing dead-lettered
    assert _events(caplog, "dependency_recovered")


def test_a_redis_that_refuses_the_consumer_stops_it_with_the_fix(
    kafka_bootstrap, hung_redis, redis_prefix, unique_name
) -> None:
    """Waiting cannot fix a refusal (here an ACL without Lua scripts), unlike an outage."""
    admin = redis_lib.Redis.from_url(hung_redis.url)
    admin.acl_setuser(
        "no-scripts",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        commands=["+@all", "-@scripting"],
    )
    admin.close()
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    redis = RedisSettings(url=hung_redis.url, username="no-scripts", password=Secret("secret"))
    runner, processor = build_runner(config, redis, scorer=NeutralScorer())
    try:
        with pytest.raises(DependencyRefused, match="fix REDIS_USERNAME and REDIS_PASSWORD"):
            runner.run(stop_after=SAFETY_S)
    finally:
        processor.publisher.close()
    assert runner.status().state == "stopped"
    assert runner.status().reason.startswith("DependencyRefused: Redis refused")
