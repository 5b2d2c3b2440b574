"""What the recs views share (`Resources`), how a worker opens it, and the heavy preparation.

`prepare_recs` (run by `threefold serve recs` and the demo, once per deployment) embeds the
catalog and tunes the combiner on the seed log, storing both in Redis. `open_resources` (run in
every worker) loads the model and data, takes the vectors and the tuned combiner from Redis (or
from its `tuned` argument) and embeds only the items Redis lacks. With an A/B test
(`ab_variants`) every worker also loads each pinned version as a recommender of its own
(`load_pinned`): its own encoder, vectors, FAISS index and interaction statistics. A pinned
version the registry entry lacks (or that fails to load) is not fatal: the worker warns, its
variant's users get the control's lists labelled `<variant>:fallback`, and the gauge
`recs_ab_variant_fallback{variant}` is 1. Each such version is watched (core `LiveModel` over a
`PinnedVersion`): once its folder is published or restored, and loads, the variant serves it
without a restart (`Resources.serve_pinned`: logged, gauge back to 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from threefold.apps.recs.ab_buckets import (
    CONTROL,
    SETTING,
    Experiment,
    fallback_label,
    fallback_warning,
    served_label,
)
from threefold.apps.recs.catalog import Catalog, load_catalog
from threefold.apps.recs.catalog_sync import CatalogSync
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.event_ids import EventIds
from threefold.apps.recs.event_spool import SPOOL_FILE, EventSpool
from threefold.apps.recs.events import Event, load_events
from threefold.apps.recs.history import LOCAL_EVENTS, UserHistories
from threefold.apps.recs.impressions import Impression, ImpressionLog, MemoryImpressionStore
from threefold.apps.recs.list_snapshots import Snapshots
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.recommender import Ranker, Recommender
from threefold.apps.recs.redis_impressions import RedisImpressionStore
from threefold.apps.recs.redis_state import RedisState
from threefold.apps.recs.shared_events import SharedEvents
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ConfigError, ModelError
from threefold.core.hot_swap import LiveModel
from threefold.core.registry import ModelEntry
from threefold.streaming.connections import RedisSettings

logger = logging.getLogger(__name__)

DEFAULT_INFO = {"model": "base encoder, default weights"}
IMPRESSION_SPOOL = "impressions.jsonl"  # the name earlier versions gave the impression spool
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


class PinnedVersion(ModelEntry):
    """A registry entry seen through one pinned version, for core `LiveModel` to follow: its
    current version is `version` once that folder holds a model's files (`ranker_store`) and
    has changed since it last failed to load (`refused`, the folder's stamp then), so a version
    published or restored while the workers run is loaded once, and a broken one is tried again
    only after the folder changes. Once `loaded`, the folder is no longer read."""

    def __init__(self, entry: ModelEntry, version: str) -> None:
        super().__init__(entry.path)
        self.name = f"{entry.name}@{version}"
        self.version = version
        self.refused: object = None
        self.loaded = False

    def pointer_stamp(self) -> Any:
        """Each file of the version's folder with its size and mtime (a plain copy changes it
        until done); None while the folder is absent or changing under the walk."""
        if self.loaded:
            return "loaded"
        folder = self.version_dir(self.version)
        try:
            files = [(str(path.relative_to(folder)), path.stat()) for path in folder.rglob("*")]
        except OSError:
            return None
        return tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in files)) or None

    def current_version(self) -> str | None:
        from threefold.apps.recs.ranker_store import missing_files

        folder = self.version_dir(self.version)
        if missing_files(folder) or self.pointer_stamp() == self.refused:
            return None
        return self.version


@dataclass
class Resources:
    """Everything the recs views share, opened once per app.

    `live` follows the registry entry named by `model_dir` (None for a plain model folder or
    none): when its current version moves, the recommender swaps to that ranker. `pinned` holds
    a recommender per pinned A/B variant of `experiment` (name -> recommender of that version);
    `fallbacks` names the pinned variants the control serves instead (name -> why); `watching`
    follows their versions in the registry (`follow_pinned`).
    """

    settings: RecsConfig
    registry: CollectorRegistry
    metrics: RecsMetrics
    redis: RedisState
    recommender: Recommender
    histories: UserHistories
    catalog_changes: CatalogSync
    impressions: ImpressionLog
    event_ids: EventIds
    snapshots: Snapshots  # the ranked lists `next_cursor` pages continue
    live: LiveModel[Ranker] | None = None
    experiment: Experiment = field(default_factory=lambda: RecsConfig().experiment)
    pinned: dict[str, Recommender] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    # None: one reading the shared log from its start, the recommender's events as its seed
    shared_events: SharedEvents | None = None
    watching: list[LiveModel[Recommender]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.shared_events is None:
            self.shared_events = SharedEvents(
                self.redis,
                self.metrics,
                seed=self.recommender.events(),
                interval_seconds=self.settings.stats_refresh_seconds,
            )
            for recommender in self.recommenders:
                self.shared_events.join(recommender, built_from=self.shared_events.generation)

    def recommender_for(self, user_id: str | None) -> tuple[str, Recommender]:
        """The label of the user's A/B variant and the recommender that ranks for it: the
        control, labelled `<variant>:fallback`, for a variant in `fallbacks`."""
        variant = self.experiment.assign(user_id)
        label = served_label(variant, self.fallbacks)
        if label != variant:
            return label, self.recommender
        return variant, self.recommender_for_variant(variant)

    def recommender_for_variant(self, variant: str) -> Recommender:
        """A pinned variant's recommender; the control's (which follows the pointer) else."""
        return self.pinned.get(variant, self.recommender)

    def follow_pinned(self, waiting: dict[str, PinnedVersion]) -> None:
        """Watch each fallback variant's version (a `LiveModel` watcher thread each, every
        `model_check_seconds`): once it loads, the variant serves it (`serve_pinned`)."""
        for variant, watched in waiting.items():
            live: LiveModel[Recommender] = LiveModel(
                watched,
                lambda folder, version, w=watched: self._index_pinned(w, folder, version),
                check_every_s=self.settings.model_check_seconds,
            )
            live.on_swap.append(
                lambda _version, recommender, v=variant, w=watched: self.serve_pinned(
                    v, recommender, w
                )
            )
            live.watch()
            self.watching.append(live)

    def _index_pinned(self, watched: PinnedVersion, folder: Path, version: str) -> Recommender:
        """A recommender of the version in `folder` over the control's catalog and events."""
        stamp = watched.pointer_stamp()
        try:
            catalog = Catalog(self.recommender.catalog)
            ranker = load_ranker(folder, version, catalog, self.redis)
            return index_ranker(
                self.settings, catalog, self.shared_events.log(), ranker, self.redis
            )
        except Exception:
            watched.refused = stamp  # tried again once the folder changes
            raise

    def serve_pinned(self, variant: str, recommender: Recommender, watched: PinnedVersion) -> None:
        """Serve `variant` with its own version's `recommender` from now on, not the control:
        events and item changes reach it, and its lists are labelled `variant` again."""
        self.shared_events.join(recommender)
        self.catalog_changes.follow(recommender)
        self.pinned = {**self.pinned, variant: recommender}
        self.fallbacks = {name: why for name, why in self.fallbacks.items() if name != variant}
        self.metrics.ab_fallback.labels(variant).set(0)
        watched.loaded = True
        logger.info(
            "A/B variant %r serves its pinned version %s now; its users got the control's lists "
            "(%r) until then",
            variant,
            recommender.model_version,
            fallback_label(variant),
            extra={
                "fields": {
                    "event": "ab_variant_restored",
                    "variant": variant,
                    "version": recommender.model_version,
                    "previous_label": fallback_label(variant),
                }
            },
        )

    def stop_watching(self) -> None:
        """Stop the watcher threads: the control's registry pointer and the fallback versions."""
        for live in [*([self.live] if self.live else []), *self.watching]:
            live.stop()

    @property
    def recommenders(self) -> list[Recommender]:
        """Every recommender this worker serves from (events and item changes reach all)."""
        return [self.recommender, *self.pinned.values()]

    @property
    def model_id(self) -> str:
        """The text encoder that embeds the catalog now (changes with a ranker swap)."""
        return self.recommender.encoder.model_id

    @property
    def model_info(self) -> dict[str, Any]:
        return self.recommender.model_info

    @property
    def model_version(self) -> str:
        return self.recommender.model_version


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
        shared_events_max=settings.shared_events_max,
    )


def load_ranker(path: Path, version: str, catalog: Catalog, redis: RedisState) -> Ranker:
    """A saved ranker folder, loaded, with the catalog vectors its build or Redis already hold
    for the catalog's current texts."""
    from threefold.apps.recs.ranker_store import RankerModel

    model = RankerModel.load(path)
    model.encoder.load()
    items = list(catalog)
    vectors = model.saved_vectors(items)
    missing = [item for item in items if item.item_id not in vectors]
    stored = redis.get_vectors(model.encoder.model_id, missing)
    logger.info(
        "ranker %s: %d catalog vectors from its build, %d from Redis, %d to embed",
        version,
        len(vectors),
        len(stored),
        len(missing) - len(stored),
    )
    return Ranker(
        encoder=model.encoder,
        combiner=model.combiner,
        version=version,
        sequence=model.sequence,
        trending_window=model.trending_window,
        neighbours=model.neighbours,
        info={**model.info, "version": version},
        vectors=vectors | stored,
    )


def load_recommender(
    settings: RecsConfig,
    redis: RedisState,
    encoder: TextEncoder | None = None,
    tuned: TunedCombiner | None = None,
    posted: Sequence[Event] = (),
) -> tuple[Recommender, list[Event], LiveModel[Ranker] | None]:
    """Catalog, seed log and ranker (`model_dir`, else `encoder` or the base model), indexed;
    it counts the seed log and the `posted` events (the shared log's).

    `model_dir` is a registry entry (its current version serves; the returned `LiveModel`
    follows its pointer) or a plain model folder (served as version = the folder's name).
    Without it the combiner is `tuned`, else the one tuned into Redis, else default weights.
    Vectors come from Redis where present; the rest are embedded here and shared.
    """
    catalog = load_catalog(settings.items_path)
    seed = load_events(settings.events_path, known_items=catalog) if settings.events_path else []
    live, ranker = None, None
    if encoder is None and settings.model_dir is not None:
        if ModelEntry.is_entry(settings.model_dir):
            live = LiveModel(
                ModelEntry(settings.model_dir),
                lambda path, version: load_ranker(path, version, catalog, redis),
                check_every_s=settings.model_check_seconds,
            )
            ranker = live.get()[1]
        else:
            ranker = load_ranker(settings.model_dir, settings.model_dir.name, catalog, redis)
    if ranker is None:
        if encoder is None:
            from threefold.core.base_model import base_model_from_env
            from threefold.core.embedder import Embedder

            encoder = Embedder(settings.base_model or base_model_from_env(), max_length=128)
        encoder.load()
        if tuned is None and (stored := redis.get_combiner(encoder.model_id)):
            tuned = TunedCombiner.from_dict(stored)
        info: dict[str, Any] = dict(DEFAULT_INFO)
        if tuned is not None:
            info = {"model": TUNED_INFO, "validation": tuned.validation}
        ranker = Ranker(
            encoder=encoder,
            combiner=tuned.combiner if tuned else LinearCombiner(),
            info=info,
            vectors=redis.get_vectors(encoder.model_id, list(catalog)),
        )
    return index_ranker(settings, catalog, [*seed, *posted], ranker, redis), seed, live


def index_ranker(
    settings: RecsConfig,
    catalog: Catalog,
    events: Sequence[Event],
    ranker: Ranker,
    redis: RedisState,
) -> Recommender:
    """A recommender serving `ranker` and counting `events`, its catalog embedded (vectors
    shared through Redis)."""
    recommender = Recommender.for_ranker(
        catalog,
        ranker,
        events,
        candidate_pool=settings.candidate_pool,
        quantize_queries=settings.quantize_queries,
        new_item_slot=settings.new_item_slot,
        stats_refresh_seconds=settings.stats_refresh_seconds,
        model_version=ranker.version,
        model_info=ranker.info,
    )
    computed = recommender.build(ranker.vectors)
    redis.put_vectors(ranker.encoder.model_id, catalog, computed)
    logger.info(
        "catalog vectors of ranker %s: %d from Redis, %d embedded by this worker",
        ranker.version,
        len(ranker.vectors),
        len(computed),
    )
    return recommender


@dataclass(frozen=True)
class PinnedVersions:
    """The pinned versions of `ab_variants`: those the registry entry holds with a weight above
    0 (each worker loads them) and those it lacks, with why (the control serves their users)."""

    loaded: list[str]
    missing: dict[str, str]


def check_pinned_versions(settings: RecsConfig) -> PinnedVersions:
    """Which pinned versions exist; ConfigError when `model_dir` is not a registry entry."""
    experiment = settings.experiment
    if not experiment.active:
        return PinnedVersions([], {})
    if settings.model_dir is None or not ModelEntry.is_entry(settings.model_dir):
        raise ConfigError(
            f"{SETTING}={settings.ab_variants!r} pins versions of a registry entry, but "
            f"THREEFOLD_RECS_MODEL_DIR={str(settings.model_dir)!r} is not one; point it at "
            "ROOT/recs-ranker (`threefold recs build --registry ROOT` creates it)"
        )
    entry = ModelEntry(settings.model_dir)
    available = entry.versions()
    served = [v.name for v in experiment if v.pinned and v.weight > 0]  # weight 0: nobody's
    return PinnedVersions(
        loaded=[name for name in served if name in available],
        missing={
            name: f"version {name!r} is missing from the registry entry {entry.path} "
            f"(versions: {available})"
            for name in served
            if name not in available
        },
    )


def load_pinned(
    settings: RecsConfig, redis: RedisState, events: Sequence[Event], versions: PinnedVersions
) -> tuple[dict[str, Recommender], dict[str, str], dict[str, PinnedVersion]]:
    """A recommender per loadable pinned A/B version (each holds its own encoder, vectors and
    index, and counts `events`), {variant: why} for the variants the control serves instead,
    each warned about, and their versions to watch (`Resources.follow_pinned`)."""
    fallbacks = dict(versions.missing)
    pinned: dict[str, Recommender] = {}
    if not versions.loaded and not fallbacks:
        return pinned, fallbacks, {}
    entry = ModelEntry(settings.model_dir)
    waiting = {version: PinnedVersion(entry, version) for version in fallbacks}
    if versions.loaded:
        catalog = load_catalog(settings.items_path)
        for version in versions.loaded:
            watched = PinnedVersion(entry, version)
            stamp = watched.pointer_stamp()  # before loading: a change meanwhile is tried again
            try:
                ranker = load_ranker(entry.version_dir(version), version, catalog, redis)
            except (ModelError, OSError) as exc:  # deleted or broken meanwhile
                fallbacks[version] = f"version {version!r} failed to load: {exc}"
                watched.refused = stamp
                waiting[version] = watched
                continue
            pinned[version] = index_ranker(settings, Catalog(catalog), events, ranker, redis)
    for variant, reason in fallbacks.items():
        logger.warning(
            "%s",
            fallback_warning(variant, reason),
            extra={
                "fields": {
                    "event": "ab_variant_fallback",
                    "variant": variant,
                    "served_by": CONTROL,
                    "label": fallback_label(variant),
                    "reason": reason,
                }
            },
        )
    return pinned, fallbacks, waiting


def follow_registry(
    live: LiveModel[Ranker],
    recommender: Recommender,
    redis: RedisState,
    metrics: RecsMetrics,
    interval_s: float,
) -> None:
    """Swap the recommender's ranker whenever the entry's current version moves (every worker)."""

    def swap(version: str, ranker: Ranker) -> None:
        try:
            computed = recommender.swap_ranker(ranker)
        except Exception:  # keep serving the old ranker; the next pointer move tries again
            logger.exception("could not swap to ranker version %s; the old one serves", version)
            return
        redis.put_vectors(ranker.encoder.model_id, recommender.catalog, computed)
        metrics.model_swaps.inc()

    live.on_swap.append(swap)
    live.watch(interval_s)


def open_spool(
    settings: RecsConfig,
    redis: RedisState,
    kind: str,
    legacy_file_name: str,
    record_type: Any = Event,
) -> EventSpool:
    """The spool of `kind` records bound for this Redis and prefix, in `spool_dir` (named by
    them: another deployment sharing the folder never replays it), the file an earlier version
    wrote (`legacy_file_name`) replayed first; records its full `.rejected` file drops are
    counted."""
    spool = EventSpool.for_redis(
        settings.spool_dir,
        kind=kind,
        redis_prefix=redis.prefix,
        redis_url=redis.url,
        legacy_file_name=legacy_file_name,
        record_type=record_type,
    )
    spool.on_not_set_aside.append(redis.metrics.observe_rejected_lost)
    return spool


def open_impressions(
    settings: RecsConfig, redis: RedisState, metrics: RecsMetrics
) -> ImpressionLog:
    """Impressions in Redis (spooled while it is down), or this worker's memory without Redis."""
    if redis.url is None:
        return ImpressionLog(MemoryImpressionStore(), metrics)
    spool = open_spool(settings, redis, "impressions", IMPRESSION_SPOOL, Impression)
    return ImpressionLog(
        RedisImpressionStore(redis), metrics, spool, takes_writes=redis.takes_writes
    )


def open_resources(
    settings: RecsConfig,
    redis: RedisSettings,
    *,
    encoder: TextEncoder | None = None,
    tuned: TunedCombiner | None = None,
) -> Resources:
    """Load model, data and Redis client; `encoder` overrides the configured text model."""
    versions = check_pinned_versions(settings)  # a bad A/B setting fails before heavy loads
    registry = CollectorRegistry()
    metrics = RecsMetrics(registry)
    state = open_redis(settings, redis, metrics)
    shared_events = SharedEvents(state, metrics, interval_seconds=settings.stats_refresh_seconds)
    shared_events.read_new()  # the newest shared_events_max every worker posted: all count them
    posted = shared_events.posted()
    recommender, seed, live = load_recommender(settings, state, encoder, tuned, posted)
    shared_events.seed = seed
    pinned, fallbacks, waiting = load_pinned(settings, state, shared_events.log(), versions)
    built_from = shared_events.generation  # the log they counted, before the catalog's sync
    for variant in fallbacks:
        metrics.ab_fallback.labels(variant).set(1)
    spool = open_spool(settings, state, "events", SPOOL_FILE) if redis.url else None
    impressions = open_impressions(settings, state, metrics)
    histories = UserHistories(
        seed,
        state,
        limit=settings.history_limit,
        local_events=min(settings.shared_events_max, LOCAL_EVENTS),
        spool=spool,
        on_stored=impressions.attribute,
        on_refused=shared_events.uncount,  # set aside: never in the stream, no longer counted
    )
    metrics.watch_catalog(
        lambda: recommender.item_count, lambda: recommender.statistics_rebuild_seconds
    )
    catalog_changes = CatalogSync(
        recommender,
        state,
        interval_seconds=settings.catalog_sync_seconds,
        followers=list(pinned.values()),
    )
    catalog_changes.sync(force=True)
    if catalog_changes.applied_changes:  # items added through the API were counted without
        built_from = None  # their events (not in the catalog yet): recount at the first refresh
    for counting in [recommender, *pinned.values()]:
        shared_events.join(counting, built_from=built_from)
    if live is not None:
        follow_registry(live, recommender, state, metrics, settings.model_check_seconds)
    resources = Resources(
        settings=settings,
        registry=registry,
        metrics=metrics,
        redis=state,
        recommender=recommender,
        histories=histories,
        catalog_changes=catalog_changes,
        impressions=impressions,
        event_ids=EventIds(state),
        snapshots=Snapshots(state),
        live=live,
        experiment=settings.experiment,
        pinned=pinned,
        fallbacks=fallbacks,
        shared_events=shared_events,
    )
    resources.follow_pinned(waiting)
    return resources


def prepare_recs(
    settings: RecsConfig, redis: RedisSettings, *, encoder: TextEncoder | None = None
) -> TunedCombiner | None:
    """Embed the catalog into Redis and, when `tune_on_start`, tune the combiner there.

    Run once before workers start, so each one only loads. Returns the tuned combiner (None
    when a `model_dir` brings its own, Redis already holds one, `tune_on_start` is off or the
    seed log is empty). Without Redis nothing is stored; pass the result to `open_resources`.
    """
    check_pinned_versions(settings)  # a bad A/B setting fails before the catalog is embedded
    state = open_redis(settings, redis, RecsMetrics(CollectorRegistry()))
    if dropped := state.drop_legacy_vectors():
        logger.info("deleted %d Redis hashes of vectors without text digests (unused)", dropped)
    recommender, seed, _ = load_recommender(settings, state, encoder)
    if recommender.model_info != DEFAULT_INFO or not settings.tune_on_start or not seed:
        return None
    validation = recommender.tune_combiner()
    tuned = TunedCombiner(recommender.combiner, validation)
    state.put_combiner(recommender.encoder.model_id, tuned.to_dict())
    logger.info("combiner tuned on %d seed events: %s", len(seed), tuned.validation)
    return tuned
