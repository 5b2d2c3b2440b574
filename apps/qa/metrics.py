"""The QA bot's Prometheus metrics: replies, confidence, webhooks, agents, bot swaps, reviews,
records kept during a Redis outage."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from threefold.apps.qa.chat import ChatReply

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
FIRST_REPLY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)


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

        self.queue_length = Gauge(
            "qa_agent_queue_length",
            "Conversations waiting for a person whose customer may still be there (their session "
            "has not expired; read from the shared store at scrape time)",
            registry=registry,
        )
        self.first_reply = Histogram(
            "qa_agent_first_reply_seconds",
            "Time from handoff to the first agent reply",
            registry=registry,
            buckets=FIRST_REPLY_BUCKETS,
        )
        self.claims = Counter(
            "qa_agent_conversations_total",
            "Conversations claimed, per agent",
            ["agent"],
            registry=registry,
        )
        self.handoffs_refused = Counter(
            "qa_handoffs_refused_total",
            "Handoffs refused (429) because the client address had THREEFOLD_QA_MAX_WAITING_PER_"
            "CLIENT conversations waiting for a person already",
            registry=registry,
        )
        self.ended = Counter(
            "qa_agent_conversations_ended_total",
            "Conversations handed back to the bot (released) or closed",
            ["how"],
            registry=registry,
        )

        self.bot_swaps = Counter(
            "qa_bot_swaps_total",
            "Bot versions swapped in by this process (edits, rebuilds, rollbacks, the pointer)",
            registry=registry,
        )
        self.bot_rebuilds = Counter(
            "qa_bot_rebuilds_total",
            "Background rebuilds after KB edits, by outcome: published (no gate set), promoted or "
            "rejected by THREEFOLD_QA_GATE_SET, failed",
            ["outcome"],
            registry=registry,
        )
        self.review_actions = Counter(
            "qa_review_actions_total",
            "Review queue actions (paraphrase, new_faq, dismiss) and the items they took",
            ["action"],
            registry=registry,
        )
        self.reviewed_items = Counter(
            "qa_reviewed_items_total", "Review items that left the queue", registry=registry
        )
        self.records_pending = Gauge(
            "qa_records_pending",
            "Feedback, unanswered questions and agent replies of a Redis outage kept in this "
            "worker's memory (the spool refused them), not yet written to Redis",
            registry=registry,
        )
        self.records_spooled = Gauge(
            "qa_records_spooled",
            "Records of a Redis outage waiting in this host's spool (shared by its workers: "
            "each reports the same file), not yet written to Redis",
            registry=registry,
        )
        self.spool_refused = Counter(
            "qa_records_spool_refused_total",
            "Records the spool refused (reason: full, disk_error), kept in memory instead",
            ["reason"],
            registry=registry,
        )
        self.records_dropped = Counter(
            "qa_records_dropped_total",
            "Records of a Redis outage lost: dropped, oldest first, from a worker's memory full "
            "at RECORD_MAX_ENTRIES per log (kind: feedback, unanswered, agent_replies)",
            ["kind"],
            registry=registry,
        )
        self.records_rejected = Counter(
            "qa_records_rejected_total",
            "Records of a Redis outage that Redis refused on their data (e.g. a key of another "
            "type under the prefix), set aside in the spool's .rejected file (kind: the log)",
            ["kind"],
            registry=registry,
        )
        self.records_rejected_lost = Counter(
            "qa_records_rejected_lost_total",
            "Records Redis refused on their data (kind: the log) and lines torn by a crash "
            "(kind: unreadable) that the spool's full .rejected file did not take "
            "(THREEFOLD_QA_SPOOL_REJECTED_MAX_MB): lost, logged",
            ["kind"],
            registry=registry,
        )
        self.records_already_written = Counter(
            "qa_records_already_written_total",
            "Kept records not written to Redis again because Redis had them already (a write "
            "it carried out after the worker's timeout, or a spool replayed again): stored once "
            "(kind: the log)",
            ["kind"],
            registry=registry,
        )

    def observe_review(self, action: str, items: int) -> None:
        self.review_actions.labels(action).inc()
        self.reviewed_items.inc(items)

    def count_queue_with(self, waiting: Callable[[], int]) -> None:
        """Report the queue length by calling `waiting()` at each scrape (all workers agree).

        When the store does not answer (Redis down) the gauge reads NaN instead of failing /metrics.
        """

        def read() -> float:
            try:
                return float(waiting())
            except Exception:  # a scrape must not fail because Redis is down
                return float("nan")

        self.queue_length.set_function(read)

    def count_pending_records_with(
        self, in_memory: Callable[[], int], spooled: Callable[[], int]
    ) -> None:
        """Report the records waiting for Redis, in this worker's memory and in the spool, by
        calling `in_memory()` and `spooled()` at each scrape."""
        self.records_pending.set_function(lambda: float(in_memory()))
        self.records_spooled.set_function(lambda: float(spooled()))

    def observe_records_already_written(self, kind: str, count: int) -> None:
        self.records_already_written.labels(kind).inc(count)

    def observe_spool_refused(self, reason: str) -> None:
        self.spool_refused.labels(reason).inc()

    def observe_records_dropped(self, kind: str, count: int) -> None:
        self.records_dropped.labels(kind).inc(count)

    def observe_record_rejected(self, kind: str) -> None:
        self.records_rejected.labels(kind).inc()

    def observe_records_rejected_lost(self, kinds: Mapping[str, int]) -> None:
        for kind, count in kinds.items():
            self.records_rejected_lost.labels(kind).inc(count)

    def observe_claim(self, agent: str) -> None:
        self.claims.labels(agent).inc()

    def observe_first_reply(self, seconds: float) -> None:
        self.first_reply.observe(max(0.0, seconds))

    def observe_handoff_refused(self) -> None:
        self.handoffs_refused.inc()

    def observe_end(self, how: str) -> None:
        self.ended.labels(how).inc()

    def observe_reply(self, reply: ChatReply) -> None:
        self.replies.labels(reply.outcome, reply.reason).inc()
        self.confidence.observe(reply.confidence)

    def observe_webhook(self, ok: bool) -> None:
        self.webhook.labels("delivered" if ok else "failed").inc()
