"""Crash safety: SIGKILL the consumer mid-batch, restart it; rebalance between two consumers."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.streaming.kafka_config import ensure_topics

from .conftest import T0, produce, surge_stream, values_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SURGE_WINDOW = 4  # surge_stream(calm_windows=4) puts the surge in the fifth window


def consumer_command(config, redis_url: str) -> list[str]:
    args = {
        "--bootstrap": config.bootstrap_servers,
        "--redis-url": redis_url,
        "--redis-prefix": config.redis_prefix,
        "--topic-model": config.topic_model_dir,
        "--sentiment-model": config.sentiment_model_dir,
        "--input-topic": config.input_topic,
        "--scored-topic": config.scored_topic,
        "--alerts-topic": config.alerts_topic,
        "--dead-letter-topic": config.dead_letter_topic,
        "--group-id": config.group_id,
        "--window": config.window_size_s,
        "--grace": config.grace_s,
        "--min-volume": config.min_volume,
        "--cooldown": config.cooldown_s,
        "--max-batch": 8,
        "--max-wait-ms": 50,
    }
    code = "from threefold.apps.alerts.cli import alerts; alerts(prog_name='alerts')"
    command = [sys.executable, "-c", code, "run"]
    for flag, value in args.items():
        command += [flag, str(value)]
    return command


def start_consumer(config, redis_url: str, log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        consumer_command(config, redis_url), stdout=handle, stderr=handle, env=env
    )


def wait_for(condition, timeout_s: float, what: str, proc=None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"consumer exited ({proc.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(0.02)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}\n{tail}")


def surge_window_total(store: RedisStateStore) -> int:
    start = T0 + SURGE_WINDOW * 300
    for counts in store.open_windows("entity:QNTV"):
        if counts.start == start:
            return counts.total
    for window in store.history("entity:QNTV"):
        if window["start"] == start:
            return window["total"]
    return 0


def surge_window_closed(store: RedisStateStore) -> bool:
    start = T0 + SURGE_WINDOW * 300
    return any(w["start"] == start for w in store.history("entity:QNTV"))


def test_sigkill_mid_batch_then_restart_loses_nothing_and_duplicates_no_alert(
    alerts_config, redis_url, redis_store, texts_by_prediction, read_topic, tmp_path
):
    config = alerts_config
    ensure_topics(config.bootstrap_servers, [config.input_topic], partitions=1)
    stream = surge_stream(texts_by_prediction, calm_windows=SURGE_WINDOW, per_window=16, surge=16)
    produce(config.bootstrap_servers, config.input_topic, stream)
    store = redis_store
    log = tmp_path / "consumer.log"

    first = start_consumer(config, redis_url, log)
    try:
        # Kill as soon as the consumer has counted part of the surge window in Redis: that
        # happens inside process(), before the batch's outputs are produced and committed.
        wait_for(lambda: surge_window_total(store) > 0, 240, "surge counted", first, log)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = surge_window_total(store)
    assert 0 < killed_at < 16, "the kill should land while the surge window is still filling"

    second = start_consumer(config, redis_url, log)
    try:
        scored = values_of(read_topic(config.scored_topic, min_count=len(stream), timeout_s=240))
        wait_for(
            lambda: surge_window_closed(store) and not store.pending_alerts(),
            60,
            "surge window closed and alerts published",
            second,
            log,
        )
        alert_records = read_topic(config.alerts_topic, timeout_s=20)
        alerts = values_of(alert_records)
        # Redelivered messages are scored twice, so `min_count` above can be reached before the
        # last message is scored: read again until every id is there (or the time is up).
        wanted = {m["id"] for m in stream}
        deadline = time.monotonic() + 60
        while {s["id"] for s in scored} < wanted and time.monotonic() < deadline:
            scored = values_of(read_topic(config.scored_topic, timeout_s=20))
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()

    assert {s["id"] for s in scored} == {m["id"] for m in stream}  # each scored at least once
    assert surge_window_total(store) == 16  # redelivered messages were not counted twice
    ids = [a["alert_id"] for a in alerts]
    if len(ids) != len(set(ids)):  # say where they are and what the consumers logged about them
        offsets = [(r.partition, r.offset) for r in alert_records]
        said = [line for line in log.read_text(errors="replace").splitlines() if "alert" in line]
        pytest.fail(f"duplicated alert ids {ids} at (partition, offset) {offsets}; log: {said}")
    assert [a["key"] for a in alerts].count("entity:QNTV") == 1


def test_rebalance_between_two_consumers_loses_nothing(
    alerts_config, redis_settings, redis_store, scorer, texts_by_prediction, read_topic
):
    config = dataclasses.replace(alerts_config, max_batch=8)
    ensure_topics(config.bootstrap_servers, [config.input_topic], partitions=2)
    stream = surge_stream(texts_by_prediction, calm_windows=SURGE_WINDOW, per_window=16)[:-1]
    early, late = stream[:40], stream[40:]  # the surge is in the second part
    produce(config.bootstrap_servers, config.input_topic, early)
    store = redis_store

    first, _ = build_runner(config, redis_settings, scorer=scorer)
    second, second_processor = build_runner(config, redis_settings, scorer=scorer)
    second_assigned = threading.Event()
    assign = second_processor.on_partitions_assigned

    def on_assigned(partitions) -> None:
        assign(partitions)
        if partitions:
            second_assigned.set()

    second_processor.on_partitions_assigned = on_assigned
    threads = [threading.Thread(target=first.run, daemon=True)]
    threads[0].start()
    try:
        wait_for(lambda: first.stats.processed >= 16, 180, "first consumer processed 16")
        threads.append(threading.Thread(target=second.run, daemon=True))
        threads[1].start()  # the group rebalances: one partition moves to the second consumer
        wait_for(second_assigned.is_set, 120, "second consumer assigned a partition")
        produce(config.bootstrap_servers, config.input_topic, late)
        wait_for(lambda: second.stats.processed > 0, 180, "second consumer processed")
        first.stop()  # ... and both partitions go to the second one when the first leaves
        threads[0].join(60)
        scored = values_of(read_topic(config.scored_topic, min_count=len(stream), timeout_s=240))
        wait_for(
            lambda: not store.pending_alerts() and surge_window_total(store) == 12,
            60,
            "surge counted and alerts published",
        )
        alerts = values_of(read_topic(config.alerts_topic, timeout_s=20))
    finally:
        first.stop()
        second.stop()
        for thread in threads:
            thread.join(60)

    assert {s["id"] for s in scored} == {m["id"] for m in stream}
    assert first.stats.processed > 0 and second.stats.processed > 0
    assert surge_window_total(store) == 12  # counted once although offsets moved between owners
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids))
    assert [a["key"] for a in alerts].count("entity:QNTV") == 1
