"""Runner metrics on a private registry, served over HTTP."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from threefold.streaming.metrics import RunnerMetrics, serve_metrics
from threefold.streaming.services import free_port


def test_throughput_is_messages_over_the_recent_window() -> None:
    metrics = RunnerMetrics(CollectorRegistry(), window_s=10)
    start = metrics._started
    metrics.observe_batch(50, 0.2, now=start + 5)
    metrics.observe_batch(50, 0.2, now=start + 10)
    assert metrics.refresh_throughput(now=start + 10) == 10.0
    assert metrics.refresh_throughput(now=start + 30) == 0.0  # idle: old batches age out


def test_lag_is_never_negative_and_forgotten_partitions_disappear() -> None:
    registry = CollectorRegistry()
    metrics = RunnerMetrics(registry)
    metrics.set_lag("news", 0, -3)  # a broker's end offset can trail the consumer briefly
    metrics.set_lag("news", 1, 7)
    labels = {"topic": "news", "partition": "1"}
    assert registry.get_sample_value("threefold_stream_consumer_lag", labels) == 7
    assert (
        registry.get_sample_value("threefold_stream_consumer_lag", {**labels, "partition": "0"})
        == 0
    )
    metrics.forget_partition("news", 1)
    metrics.forget_partition("news", 9)  # unknown: no error
    assert registry.get_sample_value("threefold_stream_consumer_lag", labels) is None


def test_serve_metrics_exposes_the_registry_over_http() -> None:
    metrics = RunnerMetrics(CollectorRegistry())
    metrics.messages_processed.labels(topic="news").inc(3)
    port = free_port()
    server = serve_metrics(metrics.registry, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'threefold_stream_messages_processed_total{topic="news"} 3.0' in body
    assert "threefold_stream_batch_seconds_bucket" in body
