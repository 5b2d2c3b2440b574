"""The alerts Kafka service: wires scorer, Redis state, publisher and processor to a runner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.metrics import AlertsMetrics
from threefold.apps.alerts.model_source import LiveScorer, open_scorer
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor
from threefold.apps.alerts.resources import open_signal_store, open_state_store
from threefold.apps.alerts.scoring import Scorer
from threefold.core.errors import ServiceError
from threefold.core.settings import reveal
from threefold.core.webhook import OutboxSender
from threefold.streaming.connections import KafkaSettings, RedisSettings
from threefold.streaming.kafka_config import consumer_config
from threefold.streaming.producer import JsonProducer, ProducerMetrics
from threefold.streaming.runner import ConsumerRunner, poll_cycle_budget_s
from threefold.streaming.topic_probe import TopicProbe

# The publisher probes the alerts topic, sends and flushes on the consumer thread, which must
# poll again within max_poll_interval_ms or the group drops it (a rebalance: batches processed
# again). All of that gets the runner's poll-cycle budget (half of max_poll_interval_ms) in all,
# and one probe call a quarter: the `ids_since` and the `end_offsets` the publisher may call
# after it fit in the budget together.
PROBE_TIMEOUTS_PER_POLL_INTERVAL = 4


def probe_timeout_s(consumer: Mapping[str, Any]) -> float:
    """The alerts-topic probe's timeout for a consumer with these settings (KafkaConsumer
    keyword arguments): a quarter of its max_poll_interval_ms."""
    return int(consumer["max_poll_interval_ms"]) / 1000 / PROBE_TIMEOUTS_PER_POLL_INTERVAL


def build_runner(
    config: AlertsConfig,
    redis: RedisSettings,
    *,
    kafka: KafkaSettings | None = None,
    scorer: Scorer | LiveScorer | None = None,
    registry: Any = None,
) -> tuple[ConsumerRunner, AlertsProcessor]:
    """The ConsumerRunner and its processor for `config` on `redis` (connects lazily).

    `kafka` (KAFKA_* settings: TLS, SASL) defaults to a PLAINTEXT connection to
    `config.bootstrap_servers`. Model directories that are registry entries are served at
    their current version and swapped between batches (`model_source`).
    """
    if kafka is None:
        kafka = KafkaSettings(bootstrap_servers=config.bootstrap_servers or None)
    if not kafka.bootstrap_servers or not redis.url:
        raise ServiceError(
            "the alerts consumer needs Kafka and Redis: set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL "
            "(or pass --bootstrap / --redis-url); `threefold demo` starts embedded ones"
        )
    metrics = AlertsMetrics(registry)
    if scorer is None:
        scorer = open_scorer(
            config.topic_model_dir,
            config.sentiment_model_dir,
            config.companies_path or None,
            batch_size=config.score_batch_size,
            check_every_s=config.model_check_s,
            on_swap=lambda versions: _count_swap(metrics, versions),
        )
    store = open_state_store(config, redis)
    webhook = None
    if config.webhook_url:
        webhook = OutboxSender(
            reveal(config.webhook_url),
            store.webhook_outbox(),
            name="alerts",
            id_field="alert_id",
            timeout_s=config.webhook_timeout_s,
            backoff_s=config.webhook_backoff_s,
            max_backoff_s=config.webhook_max_backoff_s,
            on_attempt=metrics.count_webhook_attempt,
            on_pending=metrics.set_webhook_pending,
        )
    consumer_overrides = {"fetch_max_wait_ms": config.fetch_max_wait_ms}
    consumer = consumer_config(config.group_id, **consumer_overrides)
    publisher = AlertPublisher(
        store,
        # replaced when it cannot send any more (a restarted broker forgot its producer id)
        JsonProducer(kafka, name="alerts", metrics=ProducerMetrics(metrics.registry)),
        config.alerts_topic,
        probe=TopicProbe(kafka, config.alerts_topic, timeout_s=probe_timeout_s(consumer)),
        webhook=webhook,
        metrics=metrics,
        # also when kafka-python calls it outside a poll cycle (rebalance listeners)
        budget_s=poll_cycle_budget_s(consumer),
    )
    processor = AlertsProcessor(
        config,
        scorer,
        AlertPipeline.from_config(config, store),
        publisher,
        metrics=metrics,
        signals=open_signal_store(config, redis),
    )
    runner = ConsumerRunner(
        kafka=kafka,
        topics=[config.input_topic],
        group_id=config.group_id,
        processor=processor,
        dead_letter_topic=config.dead_letter_topic,
        max_batch=config.max_batch,
        max_wait_ms=config.max_wait_ms,
        metrics_registry=metrics.registry,
        consumer_overrides=consumer_overrides,
        prepare_workers=config.prepare_workers,
    )
    return runner, processor


def _count_swap(metrics: AlertsMetrics, versions: dict[str, str]) -> None:
    for task, version in versions.items():
        metrics.model_swaps.labels(task=task, version=version).inc()
