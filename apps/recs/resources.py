"""What the recs views share (`Resources`), how a worker opens it, and the heavy preparation.

`prepare_recs` (run by `threefold serve recs` and the demo, once per deployment) embeds the
catalog and tunes the combiner on the seed log, storing both in Redis. `open_resources` (run in
every worker) loads the model and data, takes the vectors and the tuned combiner from Redis (or
from its `tuned` argument) and embeds only the items Redis lacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from threefold.apps.recs.candidates import DEFAULT_TRENDING_WINDOW
from threefold.apps.recs.catalog import load_catalog
from threefold.apps.recs.catalog_sync import CatalogSync
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event, load_events
from threefold.apps.recs.history import UserHistories
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import RedisState
from threefold.core.encoder import TextEncoder
from threefold.streaming.connections import RedisSettings

logger = logging.getLogger(__name__)

DEFAULT_INFO = {"model": "base encoder, default weights"}
TUNED_INFO = "base encoder, combiner tuned on the seed log by `threefold serve recs`"


@dataclass(frozen=True)
class TunedCombiner:
    """Combiner weights tuned on the seed log, with their validation metrics."""

    combiner: LinearCombiner
    validation: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"combiner": self.combiner.to_dict(), "validation": self.validation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TunedCombiner:
        return cls(LinearCombiner.from_dict(data["combiner"]), dict(data["validation"]))


@dataclass
class Resources:
    """Everything the recs views share, opened once per app."""

    settings: RecsConfig
    registry: CollectorRegistry
    metrics: RecsMetrics
    redis: RedisState
    recommender: Recommender
    histories: UserHistories
    catalog_changes: CatalogSync
    model_id: str
    model_info: dict[str, Any]


def open_redis(settings: RecsConfig, redis: RedisSettings, metrics: RecsMetrics) -> RedisState:
    """The app's Redis adapter (every call answers None while `redis.url` is None or down)."""
    return RedisState(
        redis,
        prefix=settings.redis_prefix,
        metrics=metrics,
        ttl_seconds=settings.cache_ttl_seconds,
        timeout_seconds=settings.redis_timeout_seconds,
        retry_seconds=settings.redis_retry_seconds,
        history_limit=settings.history_limit,
    )


def load_recommender(
    settings: RecsConfig,
    redis: RedisState,
    encoder: TextEncoder | None = None,
    tuned: TunedCombiner | None = None,
) -> tuple[Recommender, list[Event], dict[str, Any]]:
    """Catalog, seed log and ranker (`model_dir`, else `encoder` or the base model), indexed.

    Without `model_dir` the combiner is `tuned`, else the one tuned into Redis, else default
    weights. Vectors come from Redis where present; the rest are embedded here and shared.
    Returns the recommender, the seed log and what the ranker is (for /healthz).
    """
    from threefold.apps.recs.ranker_store import RankerModel

    catalog = load_catalog(settings.items_path)
    seed = load_events(settings.events_path, known_items=catalog) if settings.events_path else []
    combiner, info, window = None, dict(DEFAULT_INFO), DEFAULT_TRENDING_WINDOW
    sequence = None
    if encoder is None and settings.model_dir is not None:
        model = RankerModel.load(settings.model_dir)
        encoder, combiner, info, window, sequence = (
            model.encoder,
            model.combiner,
            model.info,
            model.trending_window,
            model.sequence,
        )
    elif encoder is None:
        from threefold.core.base_model import base_model_from_env
        from threefold.core.embedder import Embedder

        encoder = Embedder(settings.base_model or base_model_from_env(), max_length=128)
    encoder.load()
    if combiner is None and tuned is None and (stored := redis.get_combiner(encoder.model_id)):
        tuned = TunedCombiner.from_dict(stored)
    if combiner is None and tuned is not None:
        combiner = tuned.combiner
        info = {"model": TUNED_INFO, "validation": tuned.validation}
    recommender = Recommender(
        catalog,
        encoder,
        combiner=combiner,
        sequence=sequence,
        events=seed,
        candidate_pool=settings.candidate_pool,
        trending_window=window,
    )
    known = redis.get_vectors(encoder.model_id, catalog.ids)
    computed = recommender.build(known)
    redis.put_vectors(encoder.model_id, computed)
    logger.info(
        "catalog vectors: %d from Redis, %d embedded by this worker", len(known), len(computed)
    )
    return recommender, seed, info


def open_resources(
    settings: RecsConfig,
    redis: RedisSettings,
    *,
    encoder: TextEncoder | None = None,
    tuned: TunedCombiner | None = None,
) -> Resources:
    """Load model, data and Redis client; `encoder` overrides the configured text model."""
    registry = CollectorRegistry()
    metrics = RecsMetrics(registry)
    state = open_redis(settings, redis, metrics)
    recommender, seed, info = load_recommender(settings, state, encoder, tuned)
    model_id = recommender.encoder.model_id
    spool = EventSpool(settings.spool_dir) if redis.url else None
    histories = UserHistories(seed, state, limit=settings.history_limit, spool=spool)
    metrics.watch_catalog(lambda: recommender.item_count)
    catalog_changes = CatalogSync(
        recommender, state, model_id=model_id, interval_seconds=settings.catalog_sync_seconds
    )
    catalog_changes.sync(force=True)
    return Resources(
        settings=settings,
        registry=registry,
        metrics=metrics,
        redis=state,
        recommender=recommender,
        histories=histories,
        catalog_changes=catalog_changes,
        model_id=model_id,
        model_info=info,
    )


def prepare_recs(
    settings: RecsConfig, redis: RedisSettings, *, encoder: TextEncoder | None = None
) -> TunedCombiner | None:
    """Embed the catalog into Redis and, when `tune_on_start`, tune the combiner there.

    Run once before workers start, so each one only loads. Returns the tuned combiner (None
    when a `model_dir` brings its own, Redis already holds one, `tune_on_start` is off or the
    seed log is empty). Without Redis nothing is stored; pass the result to `open_resources`.
    """
    state = open_redis(settings, redis, RecsMetrics(CollectorRegistry()))
    recommender, seed, info = load_recommender(settings, state, encoder)
    if info != DEFAULT_INFO or not settings.tune_on_start or not seed:
        return None
    validation = recommender.tune_combiner()
    tuned = TunedCombiner(recommender.combiner, validation)
    state.put_combiner(recommender.encoder.model_id, tuned.to_dict())
    logger.info("combiner tuned on %d seed events: %s", len(seed), tuned.validation)
    return tuned
