"""Prometheus metrics of a ConsumerRunner, on a registry the caller owns."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class RunnerMetrics:
    """Lag, throughput, counts and batch latency/size of one consumer runner.

    All names start with `threefold_stream_`; pass each runner (or app) its own registry.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, window_s: float = 10.0
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages_processed = Counter(
            "threefold_stream_messages_processed_total",
            "Messages handled without a failure, counted once their offsets are committed (a "
            "batch whose commit the group refused counts where it is committed after re-reading).",
            ["topic"],
            registry=self.registry,
        )
        self.messages_failed = Counter(
            "threefold_stream_messages_failed_total",
            "Messages sent to the dead-letter topic, counted once their offsets are committed.",
            ["topic", "error_type"],
            registry=self.registry,
        )
        self.outputs_produced = Counter(
            "threefold_stream_outputs_produced_total",
            "Output messages produced by batches whose offsets were committed.",
            ["topic"],
            registry=self.registry,
        )
        self.batch_retries = Counter(
            "threefold_stream_batch_retries_total",
            "Retries of a batch after the processor raised.",
            registry=self.registry,
        )
        self.commits = Counter(
            "threefold_stream_commits_total",
            "Offset commits, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.rebalances = Counter(
            "threefold_stream_rebalances_total",
            "Partition revocations and assignments seen by this consumer.",
            ["event"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "threefold_stream_consumer_lag",
            "Unread messages of an assigned partition (its end offset - where the consumer is), "
            "fetched or paused.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.degraded = Gauge(
            "threefold_stream_degraded",
            "1 while the consumer has lost Kafka and is reconnecting with backoff, else 0.",
            registry=self.registry,
        )
        self.reconnects = Counter(
            "threefold_stream_reconnects_total",
            "Times the consumer lost Kafka and reconnected.",
            registry=self.registry,
        )
        self.dependency_down_since = Gauge(
            "threefold_stream_dependency_down_since_seconds",
            "Unix time at which a dependency other than Kafka (e.g. Redis) started failing the "
            "processor, while the consumer retries with backoff; 0 when none is failing.",
            registry=self.registry,
        )
        self.dependency_retries = Counter(
            "threefold_stream_dependency_retries_total",
            "Times the consumer backed off because a dependency other than Kafka failed the "
            "processor (each is retried; nothing is committed or dead-lettered meanwhile).",
            registry=self.registry,
        )
        self.poll_cycles_out_of_time = Counter(
            "threefold_stream_poll_cycles_out_of_time_total",
            "Poll cycles whose own send, flush or offset commit was cut short by the cycle's "
            "time budget (half of max_poll_interval_ms): the batch is read again.",
            registry=self.registry,
        )
        self.poll_cycles_broker_slow = Counter(
            "threefold_stream_poll_cycles_broker_slow_total",
            "Of those, the cycles that the broker's answers used up (processing took less than "
            "half the budget): the consumer reconnects, and the batch limit stays.",
            registry=self.registry,
        )
        self.batch_limit = Gauge(
            "threefold_stream_batch_limit",
            "The most messages the consumer takes into one batch now: max_batch, halved each "
            "time processing uses up a poll cycle's time budget (down to 1), doubled back once "
            "batches fit with time to spare.",
            registry=self.registry,
        )
        self.throughput = Gauge(
            "threefold_stream_throughput_messages_per_second",
            "Messages per second finished over the last window (10 s by default).",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "threefold_stream_batch_seconds",
            "Wall time to process, produce, flush and commit one batch.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "threefold_stream_batch_size",
            "Messages per batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self._window_s = window_s
        self._recent: deque[tuple[float, int]] = deque()
        self._started = time.monotonic()

    def observe_batch(self, size: int, seconds: float, *, now: float | None = None) -> None:
        """Record one finished batch (size, latency) and refresh the throughput gauge."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self._recent.append((time.monotonic() if now is None else now, size))
        self.refresh_throughput(now=now)

    def refresh_throughput(self, *, now: float | None = None) -> float:
        """Messages per second over the last `window_s` seconds (0 when idle); returns it."""
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0][0] < now - self._window_s:
            self._recent.popleft()
        span = min(self._window_s, max(now - self._started, 1e-3))
        rate = sum(size for _, size in self._recent) / span
        self.throughput.set(rate)
        return rate

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this consumer no longer owns."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve GET /metrics for `registry` on addr:port in a daemon thread; returns the server.

    Call `.shutdown()` on the returned server to stop it.
    """
    from prometheus_client import start_http_server

    started = start_http_server(port, addr=addr, registry=registry)
    server = started[0] if isinstance(started, tuple) else started
    logger.info("serving Prometheus metrics on http://%s:%d/metrics", addr, port)
    return server
