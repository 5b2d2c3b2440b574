"""The QA bot's Prometheus metrics: replies by outcome, confidence, handoff webhook deliveries."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from threefold.apps.qa.chat import ChatReply

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class QAMetrics:
    """Counters and a histogram on a registry the caller owns (and exports at /metrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.replies = Counter(
            "qa_replies_total",
            "Chat replies by outcome and reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.confidence = Histogram(
            "qa_confidence",
            "Calibrated confidence of the top candidate",
            registry=registry,
            buckets=CONFIDENCE_BUCKETS,
        )
        self.webhook = Counter(
            "qa_handoff_webhook_total", "Handoff webhook deliveries", ["result"], registry=registry
        )

    def observe_reply(self, reply: ChatReply) -> None:
        self.replies.labels(reply.outcome, reply.reason).inc()
        self.confidence.observe(reply.confidence)

    def observe_webhook(self, ok: bool) -> None:
        self.webhook.labels("delivered" if ok else "failed").inc()
