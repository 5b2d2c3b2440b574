"""Prometheus metrics of the recommendation service, on a registry the caller owns.

The A/B counters (`recs_ab_*_total{variant,version}`) count lists, items shown, and attributed
clicks and purchases per worker; the scraper computes CTR (these counters never divide), e.g.
    sum by (variant) (rate(recs_ab_clicks_total[1h]))
      / sum by (variant) (rate(recs_ab_shown_total[1h]))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


class RecsMetrics:
    """Cache lookups and Redis health, lists served and their impressions, events, the shared
    event log, catalog size."""

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
        self.events_already_stored = Counter(
            "recs_events_already_stored_total",
            "Accepted events not written to Redis because Redis had them already (a write "
            "carried out after its timeout, then replayed from the spool): stored once",
            registry=registry,
        )
        self.impressions = Counter(
            "recs_impressions_total",
            "Recommendation lists logged as impressions, by the model version that ranked them",
            ["model_version"],
            registry=registry,
        )
        ab_labels = ["variant", "version"]
        self.ab_lists = Counter(
            "recs_ab_impressions_total",
            "Recommendation lists served, by A/B variant and the ranker version behind it",
            ab_labels,
            registry=registry,
        )
        self.ab_shown = Counter(
            "recs_ab_shown_total",
            "Items shown in recommendation lists, by A/B variant and ranker version",
            ab_labels,
            registry=registry,
        )
        self.ab_outcomes = {
            event: Counter(
                f"recs_ab_{event}s_total",
                f"{event.capitalize()}s attributed to a list (its list_id), by A/B variant and "
                "ranker version; CTR = clicks / shown, computed by the scraper",
                ab_labels,
                registry=registry,
            )
            for event in ("click", "purchase")
        }
        self.ab_fallback = Gauge(
            "recs_ab_variant_fallback",
            "1 for a pinned A/B variant whose version is missing from the registry or failed to "
            "load: the control ranks its users' lists, labelled '<variant>:fallback'",
            ["variant"],
            registry=registry,
        )
        self.spool_rejected = Counter(
            "recs_spool_records_rejected_total",
            "Spooled records Redis refused on their data (e.g. a key of another type under the "
            "prefix), set aside in the spool's .rejected file, by kind (event)",
            ["kind"],
            registry=registry,
        )
        self.spool_rejected_lost = Counter(
            "recs_spool_records_rejected_lost_total",
            "Records Redis refused on their data that the spool's full .rejected file "
            "(event_spool.REJECTED_MAX_BYTES) could not keep: dropped, by kind "
            "(Event, Impression; unreadable for a torn line); empty the .rejected file",
            ["kind"],
            registry=registry,
        )
        self.shared_log_wrong_type = Gauge(
            "recs_shared_log_wrong_type",
            "1 while Redis holds another type than a stream at the shared event log key "
            "(<prefix>events-log): no event can be stored, they wait in the spool; delete or "
            "rename that key",
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
        self.statistics_rebuild = Gauge(
            "recs_statistics_rebuild_seconds",
            "Duration of the last rebuild of the interaction statistics (background above 0.2 s)",
            registry=registry,
        )
        self.shared_events_up = Gauge(
            "recs_shared_events_available",
            "1 when this worker's last read of the event log shared by all workers (Redis) "
            "succeeded; 0: it ranks with its last statistics plus the events posted to it",
            registry=registry,
        )
        self.shared_events_read = Counter(
            "recs_shared_events_read_total",
            "Events read from the shared event log (posted to any worker) and counted here",
            registry=registry,
        )
        self.shared_events_counted = Gauge(
            "recs_shared_events_counted",
            "Posted events this worker's statistics count besides the seed log: the newest "
            "shared_events_max of the shared log, and its own not yet read back from there",
            registry=registry,
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

    def observe_rejected_lost(self, kinds: Mapping[str, int]) -> None:
        for kind, count in kinds.items():
            self.spool_rejected_lost.labels(kind).inc(count)

    def count_ab_impression(self, variant: str, version: str, shown: int) -> None:
        self.ab_lists.labels(variant, version).inc()
        self.ab_shown.labels(variant, version).inc(shown)

    def count_ab_outcome(self, variant: str, version: str, event: str) -> None:
        self.ab_outcomes[event].labels(variant, version).inc()

    def watch_catalog(self, count: Callable[[], int], rebuild_seconds: Callable[[], float]) -> None:
        """Report `count()` as the catalog size and `rebuild_seconds()` as the last statistics
        rebuild's duration at every scrape."""
        self.catalog_items.set_function(count)
        self.statistics_rebuild.set_function(rebuild_seconds)

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
