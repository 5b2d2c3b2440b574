"""The alerts learning loop end to end, on the embedded broker and Redis with tiny models.

Five headlines scored by the running consumer are corrected through the dashboard API;
`threefold retrain alerts` trains a candidate on the base CSV plus the corrections, scores it and
the live version on the gate set and promotes it; the running consumer scores with the new
version (its `models` in news-scored); `threefold models rollback` brings the old one back the
same way. A candidate trained on flipped labels is rejected and the live version stays.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.model_source import ENTRY_NAMES
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.signals import make_correction
from threefold.apps.alerts.web import create_app
from threefold.apps.cli import cli
from threefold.core.registry import ModelRegistry
from threefold.streaming.kafka_config import ensure_topics

from .conftest import T0, produce, sample_rows, values_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANALYST = {"Authorization": "Bearer ana-secret"}
BREACH = [
    "Quantive Software shares plunge after data breach exposes customer records",
    "Quantive Software hit by second outage in a week",
    "Regulators open inquiry into Quantive Software breach",
    "Quantive Software loses major client after security lapse",
    "Quantive Software warns breach costs will hurt profit",
]
# The recipe of the session's tiny models (conftest.model_dirs), so candidate and live compare.
TRAINING = ["--max-steps", "40", "--learning-rate", "2e-4", "--batch-size", "16",
            "--max-length", "32", "--warmup-ratio", "0", "--no-progress"]  # fmt: skip


@pytest.fixture
def registry(tmp_path, model_dirs) -> ModelRegistry:
    """The session's tiny topic and sentiment models published as v1 of their entries."""
    registry = ModelRegistry(tmp_path / "models")
    for task in ("topic", "sentiment"):
        registry.entry(ENTRY_NAMES[task]).publish_dir(model_dirs[task], metadata={"task": task})
    return registry


def scored_versions(read_topic, topic: str, ids: set[str]) -> dict[str, dict]:
    """The `models` of each scored message with one of `ids` (waits until all are there)."""
    deadline = time.monotonic() + 120
    found: dict[str, dict] = {}
    while time.monotonic() < deadline and set(found) != ids:
        for record in values_of(read_topic(topic, timeout_s=5)):
            if record["id"] in ids:
                found[record["id"]] = record["models"]
    assert set(found) == ids, f"scored only {sorted(found)} of {sorted(ids)}"
    return found


def send(config: AlertsConfig, texts: list[str], tag: str) -> set[str]:
    messages = [
        {"id": f"{tag}-{i}", "text": text, "published_at": T0 + i, "entities": ["QNTV"]}
        for i, text in enumerate(texts)
    ]
    produce(config.bootstrap_servers, config.input_topic, messages)
    return {m["id"] for m in messages}


def retrain(registry: ModelRegistry, config: AlertsConfig, redis_url: str, *extra: str) -> dict:
    # fmt: off
    args = ["retrain", "alerts", "--task", "sentiment", "--registry", str(registry.root),
            "--redis-url", redis_url, "--redis-prefix", config.redis_prefix, *TRAINING, *extra]
    # fmt: on
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_corrections_retrain_gate_hot_swap_and_rollback(
    alerts_config, registry, redis_settings, redis_url, read_topic
) -> None:
    sentiment = registry.entry(ENTRY_NAMES["sentiment"])
    config = AlertsConfig(
        **{
            **alerts_config.__dict__,
            "topic_model_dir": str(registry.root / ENTRY_NAMES["topic"]),
            "sentiment_model_dir": str(sentiment.path),
            "model_check_s": 0.2,
            "analyst_tokens": "ana:ana-secret",
            "quiet_close_s": 0,
        }
    )
    ensure_topics(config.bootstrap_servers, [config.input_topic])
    runner, processor = build_runner(config, redis_settings)
    consumer = threading.Thread(target=runner.run, daemon=True)
    consumer.start()
    dashboard = create_app(config, open_resources(config, redis_settings)).test_client()
    try:
        first = send(config, BREACH, "first")
        before = scored_versions(read_topic, config.scored_topic, first)
        assert set(map(json.dumps, before.values())) == {
            json.dumps({"topic": "v1", "sentiment": "v1"})
        }

        # Five headlines corrected through the dashboard API, with what the analyst saw.
        for message_id in sorted(first):
            body = {"message_id": message_id, "task": "sentiment", "label": "negative"}
            response = dashboard.post("/api/corrections", json=body, headers=ANALYST)
            assert response.status_code == 201, response.get_json()
            assert response.get_json()["correction"]["model_version"] == "v1"

        # Same recipe as v1 plus the five corrected headlines (here 0.98 vs 0.96 macro-F1); 40
        # steps on a CPU may round differently elsewhere, so the configurable margin is 0.02.
        promoted = retrain(registry, config, redis_url, "--margin", "0.02")
        assert promoted["app"] == "alerts" and promoted["model"] == "alerts-sentiment"
        assert promoted["current_version"] == "v1" and promoted["candidate_version"] == "v2"
        gate = promoted["gate"]
        assert gate["metric"] == "macro_f1" and gate["current"] is not None
        assert promoted["promoted"] is True, gate["reason"]
        assert gate["candidate"] >= gate["current"] - 0.02 and gate["margin"] == 0.02
        assert promoted["live_version"] == "v2" and sentiment.current_version() == "v2"
        assert promoted["training"]["added"] == 5  # the corrected headlines were not in the base
        assert promoted["gate_set"]["examples"] == 54
        info = sentiment.info("v2")
        assert info["status"] == "current" and info["parent"] == "v1"
        assert info["data_fingerprint"] and info["metrics"]["macro_f1"] == gate["candidate"]

        after = scored_versions(read_topic, config.scored_topic, send(config, BREACH, "second"))
        assert {m["sentiment"] for m in after.values()} == {"v2"}
        assert {m["topic"] for m in after.values()} == {"v1"}

        rollback = CliRunner().invoke(
            cli, ["models", "rollback", "alerts-sentiment", "--registry", str(registry.root)]
        )
        assert rollback.exit_code == 0, rollback.output
        rolled = scored_versions(read_topic, config.scored_topic, send(config, BREACH, "third"))
        assert {m["sentiment"] for m in rolled.values()} == {"v1"}

        # Corrections that flip every negative headline of the base data to positive.
        signals = open_resources(config, redis_settings).signals
        for i, row in enumerate(r for r in sample_rows() if r["sentiment"] == "negative"):
            scored = {"id": f"flip-{i}", "text": row["text"], "sentiment": "negative", "models": {}}
            signals.save_correction(
                make_correction(
                    scored, "sentiment", "positive", analyst="ana", topic_labels=[], now=time.time()
                )
            )
        rejected = retrain(registry, config, redis_url, "--margin", "0.02", "--max-steps", "10")
        assert rejected["promoted"] is False and rejected["candidate_version"] == "v3"
        assert rejected["gate"]["candidate"] < rejected["gate"]["current"] - 0.02
        assert "rejected" in rejected["gate"]["reason"]
        assert rejected["live_version"] == "v1" and sentiment.current_version() == "v1"
        assert sentiment.info("v3")["status"] == "rejected"
        still = scored_versions(read_topic, config.scored_topic, send(config, BREACH, "fourth"))
        assert {m["sentiment"] for m in still.values()} == {"v1"}
    finally:
        runner.stop()
        consumer.join(60)
    swaps = processor.metrics.registry.get_sample_value(
        "threefold_alerts_model_swaps_total", {"task": "sentiment", "version": "v2"}
    )
    assert swaps == 1
