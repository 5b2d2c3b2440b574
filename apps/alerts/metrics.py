"""Prometheus metrics of the alerting consumer (on a registry the caller owns)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from threefold.core.webhook import PostResult


class AlertsMetrics:
    """Counters for every way a message or alert can go; one instance per registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.scored = Counter("threefold_alerts_messages_scored", "Messages scored", registry=r)
        self.invalid = Counter(
            "threefold_alerts_messages_invalid",
            "Messages rejected to the dead-letter topic",
            registry=r,
        )
        self.late = Counter(
            "threefold_alerts_messages_late",
            "Messages whose windows had all closed (scored, not aggregated)",
            registry=r,
        )
        self.ahead_of_clock = Counter(
            "threefold_alerts_messages_ahead_of_clock",
            "Messages stamped further ahead of the consumer's clock than grace_s (counted; a "
            "feed sending these has a wrong clock or time zone)",
            registry=r,
        )
        self.duplicates = Counter(
            "threefold_alerts_messages_redelivered",
            "Messages already counted in their windows (redelivery); not counted twice",
            registry=r,
        )
        self.windows_closed = Counter(
            "threefold_alerts_windows_closed", "Windows closed", registry=r
        )
        self.alerts = Counter(
            "threefold_alerts_published", "Alerts published to the alerts topic", registry=r
        )
        self.suppressed = Counter(
            "threefold_alerts_suppressed", "Surges not alerted", ["reason"], registry=r
        )
        self.publish_failures = Counter(
            "threefold_alerts_publish_failures",
            "Failed attempts to publish alerts (kept in the outbox and retried)",
            registry=r,
        )
        self.publish_out_of_time = Counter(
            "threefold_alerts_publish_out_of_time",
            "Attempts to publish alerts that ran out of their time for Kafka (a share of "
            "max_poll_interval_ms) with alerts unanswered: kept in the outbox for the next one",
            registry=r,
        )
        self.webhook_pending = Gauge(
            "threefold_alerts_webhook_pending",
            "Alert webhook deliveries waiting in the outbox (all replicas', as last read; "
            "stale while threefold_alerts_webhook_outbox_unreachable is 1)",
            registry=r,
        )
        self.webhook_outbox_unreachable = Gauge(
            "threefold_alerts_webhook_outbox_unreachable",
            "1 while the webhook sender cannot read its outbox (Redis away: nothing is "
            "delivered and webhook_pending is stale), else 0",
            registry=r,
        )
        self.webhook_delivered = Counter(
            "threefold_alerts_webhook_delivered",
            "Alert webhook deliveries the receiver answered with a 2xx",
            registry=r,
        )
        self.webhook_failures = Counter(
            "threefold_alerts_webhook_failures",
            "Alert webhook attempts that failed (5xx, 408/409/425/429, redirect, timeout, "
            "refused, garbled answer); retried with backoff",
            registry=r,
        )
        self.webhook_rejected = Counter(
            "threefold_alerts_webhook_rejected",
            "Alert webhook deliveries the receiver refused for good (a 4xx other than "
            "408/409/425/429), by status: moved out of the outbox, not retried",
            ["status"],
            registry=r,
        )
        self.webhook_retries = Counter(
            "threefold_alerts_webhook_retries",
            "Alert webhook attempts after a delivery's first",
            registry=r,
        )
        self.webhook_dropped = Counter(
            "threefold_alerts_webhook_dropped",
            "Alert webhook deliveries dropped undelivered, oldest first, as the outbox was full",
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "threefold_alerts_scoring_seconds",
            "Time to score one batch with both classifiers",
            registry=r,
        )
        self.model_swaps = Counter(
            "threefold_alerts_model_swaps",
            "Times the consumer started scoring with another registry version (promote/rollback)",
            ["task", "version"],
            registry=r,
        )
        self.partitions_dropped = Counter(
            "threefold_alerts_watermark_partitions_dropped",
            "Input partitions dropped from the watermark as the group no longer reads them "
            "(reason: topic_not_read, partition_gone)",
            ["reason"],
            registry=r,
        )
        self.watermark = Gauge(
            "threefold_alerts_watermark_seconds", "Event-time watermark (epoch seconds)", registry=r
        )

    def count_webhook_attempt(self, _alert: dict, result: PostResult, attempt: int) -> None:
        """`core.webhook.OutboxSender`'s on_attempt hook."""
        if result.ok:
            self.webhook_delivered.inc()
        elif result.rejected:
            self.webhook_rejected.labels(status=str(result.status)).inc()
        else:
            self.webhook_failures.inc()
        if attempt > 1:
            self.webhook_retries.inc()

    def set_webhook_pending(self, pending: int | None) -> None:
        """`core.webhook.OutboxSender`'s on_pending hook: None when the outbox was unreachable
        (the pending gauge then keeps its last value and the unreachable gauge says so)."""
        self.webhook_outbox_unreachable.set(pending is None)
        if pending is not None:
            self.webhook_pending.set(pending)
