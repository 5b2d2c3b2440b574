"""Prometheus metrics of the recommendation service, on a registry the caller owns."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


class RecsMetrics:
    """Cache lookups and Redis health, lists served and their impressions, events, catalog size."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "recs_cache_lookups_total",
            "Recommendation cache lookups by result (hit, miss, unavailable)",
            ["result"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "recs_redis_errors_total",
            "Redis operations that failed (the API answered without Redis)",
            ["operation"],
            registry=registry,
        )
        self.redis_up = Gauge(
            "recs_redis_available", "1 when the last Redis call succeeded", registry=registry
        )
        self.served = Counter(
            "recs_recommendations_total",
            "Recommendation lists served, by kind (personal, cold_start) and cache use",
            ["kind", "cached"],
            registry=registry,
        )
        self.events = Counter(
            "recs_events_total", "Events accepted, by type", ["event"], registry=registry
        )
        self.impressions = Counter(
            "recs_impressions_total",
            "Recommendation lists logged as impressions, by the model version that ranked them",
            ["model_version"],
            registry=registry,
        )
        self.impressions_lost = Counter(
            "recs_impressions_lost_total",
            "Impressions neither stored nor spooled (Redis down and the spool disk refused)",
            registry=registry,
        )
        self.model_swaps = Counter(
            "recs_model_swaps_total",
            "Ranker versions swapped in while serving (registry promotions and rollbacks)",
            registry=registry,
        )
        self.catalog_items = Gauge(
            "recs_catalog_items", "Items that can be recommended", registry=registry
        )
        self.hits = 0
        self.misses = 0
        self.unavailable = 0
        self._lock = threading.Lock()
        Gauge(
            "recs_cache_hit_rate",
            "Cache hits / (hits + misses) since start",
            registry=registry,
        ).set_function(lambda: self.hit_rate)

    def watch_catalog(self, count: Callable[[], int]) -> None:
        """Report `count()` as the catalog size at every scrape."""
        self.catalog_items.set_function(count)

    def record(self, result: str) -> None:
        """Count one cache lookup: "hit", "miss" or "unavailable"."""
        with self._lock:
            if result == "hit":
                self.hits += 1
            elif result == "miss":
                self.misses += 1
            else:
                self.unavailable += 1
        self.lookups.labels(result).inc()

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "unavailable": self.unavailable,
            "hit_rate": round(self.hit_rate, 4),
        }
