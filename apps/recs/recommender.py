"""The recommendation facade: catalog + text encoder + FAISS + statistics + ranker + rules."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import (
    DEFAULT_TRENDING_WINDOW,
    InteractionStats,
    attribute_of,
    descending,
    generate_candidates,
    pool_tiers,
    tiered_candidates,
)
from threefold.apps.recs.catalog import Catalog, Item
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.events import EVENT_VERBS, Event
from threefold.apps.recs.profiles import UserProfile
from threefold.apps.recs.ranker_training import RankerSettings, tune_combiner
from threefold.apps.recs.ranking_features import (
    FEATURES,
    SEQUENCE_COLUMN,
    FeatureBuilder,
    query_encoder_for,
)
from threefold.apps.recs.rules import (
    allowed_items,
    category_mask,
    new_item_slot,
    paginate,
    rank_by_tier,
)
from threefold.apps.recs.sequence_ensemble import SequenceEnsemble
from threefold.apps.recs.sequence_model import SequenceModel
from threefold.apps.recs.similar_items import pool_size, rank_similar
from threefold.apps.recs.statistics_process import count_statistics
from threefold.core.encoder import TextEncoder
from threefold.core.index import FaissIndex

logger = logging.getLogger(__name__)

TEXT_FEATURES = {"text", "profile", "category", "cooccurrence", "recent_cooccurrence", "sequence"}
REASON_HISTORY = 20
COLD_POPULARITY_WEIGHT = 0.6
DEFAULT_NEIGHBOURS = 200  # co-occurrence neighbours per item without a trained ranker
BASE_VERSION = "base"  # what serves without a ranker from `threefold recs build`
EDIT_ATTEMPTS = 3  # an item edit's tables computed outside the lock, then under it


def _query_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="recs-query")


def _renew_query_pool() -> None:
    """A forked child has none of the pool's threads but its bookkeeping: tasks would wait."""
    global QUERY_POOL
    QUERY_POOL = _query_pool()


# a request's index search, co-occurrence and text embedding run here while its own thread
# computes the sequence scores (threads start lazily)
QUERY_POOL = _query_pool()
os.register_at_fork(after_in_child=_renew_query_pool)


def profile_signals(
    builder: FeatureBuilder, index: FaissIndex, encoder: Any, profile: UserProfile, pool: int
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """A warm profile's FAISS neighbours (positions), co-occurrence scores (all, recent) and
    history-text embedding: everything a request needs besides the sequence scores."""
    found = index.search(profile.vector[None, :], min(pool, len(index)))[0]
    return (
        [builder.position[item_id] for item_id, _ in found if item_id in builder.position],
        builder.cooccurrence(profile),
        builder.cooccurrence(profile, recent=True),
        encoder.encode([profile.text])[0],
    )


@dataclass(frozen=True)
class Ranker:
    """What ranks: text encoder, combiner, optional sequence ranker, and the version naming them.

    `vectors` are the encoder's vectors of catalog items prepared before a swap (item id ->
    vector); the recommender embeds whatever they lack.
    """

    encoder: TextEncoder
    combiner: LinearCombiner
    version: str = BASE_VERSION
    sequence: SequenceModel | SequenceEnsemble | None = None
    trending_window: float = DEFAULT_TRENDING_WINDOW
    info: Mapping[str, Any] = field(default_factory=dict)
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    # co-occurrence neighbours kept per item, as the combiner was fitted with (None: all)
    neighbours: int | None = DEFAULT_NEIGHBOURS


@dataclass(frozen=True)
class Ranked:
    """One item of a ranked list as a snapshot keeps it: its score and what decided it
    (`popular`, `trending` or `text`; a `text` reason names a history item when shown)."""

    item_id: str
    score: float
    why: str


@dataclass(frozen=True)
class Recommendation:
    item: Item
    score: float
    reason: str
    because: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.item.to_dict(),
            "score": round(float(self.score), 4),
            "reason": self.reason,
            "because_item_id": self.because,
        }


@dataclass
class RecommendationList:
    user_id: str
    items: list[Recommendation]
    cold_start: bool
    offset: int
    next_offset: int | None
    next_cursor: str | None
    model_version: str = BASE_VERSION
    # with `recommend(depth=...)`: the whole ranked list the page was cut from
    ranked: list[Ranked] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "model_version": self.model_version,
            "cold_start": self.cold_start,
            "offset": self.offset,
            "next_offset": self.next_offset,
            "next_cursor": self.next_cursor,
            "items": [r.to_dict() for r in self.items],
        }


def feature_tables(
    items: Sequence[Item], vectors: np.ndarray, stats: InteractionStats
) -> tuple[FeatureBuilder, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The feature builder, trending in catalog order, and (popularity, trending) positions best
    first (so a request need not sort the catalog)."""
    return tables_of(FeatureBuilder(items, vectors, stats))


def tables_of(
    builder: FeatureBuilder,
) -> tuple[FeatureBuilder, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """`feature_tables` of a builder made already."""
    trending = builder.remap(builder.stats.trending())
    return builder, trending, (descending(builder.popularity), descending(trending))


def _why(contributions: np.ndarray | None, row: int) -> str:
    """What decided a candidate's score: `text` (a text feature), `trending` or `popular`."""
    if contributions is None:
        return "popular"
    strongest = FEATURES[int(np.argmax(contributions[row]))]
    if strongest in TEXT_FEATURES:
        return "text"
    return "trending" if strongest == "trending" else "popular"


def _allowed_for(
    builder: FeatureBuilder,
    profile: UserProfile,
    active: np.ndarray,
    category: str | None,
    exclude_seen: bool,
    exclude_purchased: bool,
    purchased: Collection[str],
) -> np.ndarray:
    """The items a user may be shown now (`rules.allowed_items` for this profile)."""
    bought = {e.item_id for e in profile.events if e.event == "purchase"} | set(purchased)
    bought_positions = [builder.position[i] for i in bought if i in builder.position]
    return allowed_items(
        active[: builder.n],
        seen=profile.positions,
        purchased=bought_positions if exclude_purchased else (),
        exclude_seen=exclude_seen,
        category=category_mask(builder.items, category),
    )


class Recommender:
    """Ranks catalog items for a user history; items can be added or removed at any time.

    Item vectors come from the (fine-tuned) text encoder, so a new item is recommendable the
    moment it is added: it is embedded, put in the FAISS index and scored by its text.
    Interaction statistics are rebuilt from the event log at most every `stats_refresh_seconds`.
    With a `sequence` ranker its next-item score (over the same text vectors, so new items too)
    is one more feature of the combiner. `swap_ranker` replaces the ranker while serving; every
    list names the `model_version` that ranked it. `index_factory(dimension)` makes the empty
    vector index (default: exact search below 20k items, IVF above; bench/recs_scale.py passes
    others). With `quantize_queries` the user's history text is embedded per request by an int8
    twin of a CPU encoder (about half the time; item vectors stay fp32); None decides by the
    catalog's size at each build and ranker swap (`ranking_features.quantize_queries_for`).
    With `new_item_slot` and a sequence ranker, the best new item (no interactions yet) by its
    sequence score takes the k-th place of a list that has none (`rules.new_item_slot`).

    Statistics rebuilds that last took under `inline_rebuild_seconds` run inside the request
    that finds them stale; slower ones (large catalogs) run in a background thread while
    requests keep the previous statistics, so no request waits for one.
    """

    def __init__(
        self,
        catalog: Catalog,
        encoder: TextEncoder,
        *,
        combiner: LinearCombiner | None = None,
        sequence: SequenceModel | SequenceEnsemble | None = None,
        events: Sequence[Event] = (),
        candidate_pool: int = 200,
        trending_window: float = DEFAULT_TRENDING_WINDOW,
        neighbours: int | None = DEFAULT_NEIGHBOURS,
        stats_refresh_seconds: float = 2.0,
        model_version: str = BASE_VERSION,
        model_info: Mapping[str, Any] | None = None,
        index_factory: Callable[[int], FaissIndex] = FaissIndex,
        quantize_queries: bool | None = None,
        inline_rebuild_seconds: float = 0.2,
        new_item_slot: bool = False,
    ) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.new_item_slot = new_item_slot
        self.quantize_queries = quantize_queries
        self.inline_rebuild_seconds = inline_rebuild_seconds
        self._query_encoder = encoder
        self.combiner = combiner or LinearCombiner()
        self.sequence = sequence
        self.model_version = model_version
        self.model_info = dict(model_info or {})
        self.candidate_pool = candidate_pool
        self.trending_window = trending_window
        self.neighbours = neighbours
        self.stats_refresh_seconds = stats_refresh_seconds
        self.index_factory = index_factory
        self._events: list[Event] = list(events)
        # the log it counts instead of `_events` once it follows one (`count_events_from`)
        self._event_log: Callable[[], Sequence[Event]] | None = None
        self._events_generation = 0  # each change of the events counted
        self._lock = threading.RLock()
        self._items: list[Item] = []
        self._position: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._active = np.zeros(0, dtype=bool)
        self._index: FaissIndex | None = None
        self._stats: InteractionStats | None = None
        self._builder: FeatureBuilder | None = None
        self._trending = np.zeros(0, dtype=np.float32)
        self._orders = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._stats_dirty = False
        self._stats_built_at = 0.0
        self._stats_build_seconds = 0.0
        self._stats_thread: threading.Thread | None = None
        self._stats_generation = 0  # a synchronous rebuild outdates one in flight
        self._tables_generation = 0  # tables installed since (item edits too) outdate a rebuild

    @classmethod
    def for_ranker(
        cls, catalog: Catalog, ranker: Ranker | Any, events: Sequence[Event], **options: Any
    ) -> Recommender:
        """A recommender ranking with `ranker` (a `Ranker` or a trained `RankerModel`): its
        encoder, combiner, sequence ranker, trending window and neighbours; `options` are the
        other constructor arguments (or override those). Call `build` next."""
        defaults = {
            "combiner": ranker.combiner,
            "sequence": ranker.sequence,
            "trending_window": ranker.trending_window,
            "neighbours": ranker.neighbours,
        }
        return cls(catalog, ranker.encoder, events=events, **{**defaults, **options})

    # ------------------------------------------------------------------ building
    def build(self, known_vectors: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Embed the catalog (reusing `known_vectors`), index it and count interactions.

        Returns the vectors it had to compute, so a cache can share them with other workers.
        """
        self.encoder.load()
        items = list(self.catalog)
        query_encoder = query_encoder_for(self.encoder, self.quantize_queries, len(items))
        vectors, computed = self._vectors_for(items, known_vectors or {})
        with self._lock:
            self._query_encoder = query_encoder
            self._items = items
            self._position = {item.item_id: i for i, item in enumerate(items)}
            self._vectors = vectors
            self._active = np.ones(len(items), dtype=bool)
            self._index = self.index_factory(self.encoder.dimension)
            if items:
                self._index.add([item.item_id for item in items], vectors)
            self._rebuild_stats()
        self._prepare_sequence_table()  # here, not in the first request after a start
        logger.info(
            "recommender ready: %d items, %d events, %d vectors computed",
            len(items),
            len(self._counted_events()),
            len(computed),
        )
        return computed

    def _vectors_for(
        self,
        items: Sequence[Item],
        known: Mapping[str, np.ndarray],
        encoder: TextEncoder | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        encoder = encoder or self.encoder
        dimension = encoder.dimension
        missing = [
            item
            for item in items
            if item.item_id not in known or np.asarray(known[item.item_id]).shape != (dimension,)
        ]
        fresh = encoder.encode([item.text for item in missing]) if missing else None
        computed = {item.item_id: fresh[i] for i, item in enumerate(missing)}
        matrix = np.zeros((len(items), dimension), dtype=np.float32)
        for row, item in enumerate(items):
            source = computed.get(item.item_id)
            matrix[row] = source if source is not None else np.asarray(known[item.item_id])
        return matrix, computed

    def _count(
        self,
        item_ids: list[str],
        events: Sequence[Event],
        ranker: Ranker | None = None,
        *,
        position: dict[str, int] | None = None,
    ) -> InteractionStats:
        """Interaction statistics as `ranker` (default: the one serving) was fitted with.

        With `position` (id -> index of `item_ids`), counted in a child process
        (`statistics_process`): for a rebuild beside requests.
        """
        started = time.monotonic()
        options = {
            "neighbours": self.neighbours if ranker is None else ranker.neighbours,
            "trending_window": self.trending_window if ranker is None else ranker.trending_window,
        }
        if position is None:
            stats = InteractionStats(item_ids, events, **options)
        else:
            stats = count_statistics(item_ids, events, position=position, **options)
        self._stats_build_seconds = time.monotonic() - started
        return stats

    def _rebuild_stats(self) -> None:
        """Count the whole event log now (call with the lock held)."""
        self._use_stats(self._count(attribute_of(self._items, "item_id"), self._counted_events()))

    def _use_stats(
        self,
        stats: InteractionStats,
        tables: tuple[FeatureBuilder, np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        """Serve `stats` with `tables` built from them for the current items, or new tables
        (call with the lock held); a background rebuild still counting is outdated."""
        self._stats = stats
        self._stats_generation += 1
        if tables is None:
            self._refresh_builder()
        else:
            self._install(*tables)
        self._stats_dirty = False
        self._stats_built_at = time.monotonic()

    def _rebuild_stats_in_background(self) -> None:
        """Count a snapshot of the log in a thread (the counting itself in a child process:
        `statistics_process`), then swap it in (call with the lock held).

        Events arriving meanwhile mark the statistics dirty again for the next rebuild; items
        added meanwhile get no counts until then (the builder maps stats by item id).
        """
        builder, events = self._builder, self._counted_events()
        generation, installed = self._stats_generation, self._tables_generation
        self._stats_dirty = False

        def rebuild() -> None:
            try:
                # counted in a child process over the serving builder's items, whose item-side
                # tables (and sequence item table: 5 s for a request at 1M items) then carry over
                stats = self._count(builder.item_ids, events, position=builder.position)
                tables = tables_of(builder.with_stats(stats))
                with self._lock:
                    if generation == self._stats_generation:
                        self._stats = stats
                        if installed == self._tables_generation:
                            self._install(*tables)
                        else:  # items changed meanwhile: the tables must cover them
                            self._refresh_builder()
                        self._stats_built_at = time.monotonic()
            except Exception:
                logger.exception("background statistics rebuild failed; will retry")
                with self._lock:
                    self._stats_dirty = True
            finally:
                with self._lock:
                    self._stats_thread = None

        self._stats_thread = threading.Thread(target=rebuild, name="recs-stats", daemon=True)
        self._stats_thread.start()

    def wait_for_statistics(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild in flight; True when none is left running."""
        thread = self._stats_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _refresh_builder(self) -> None:
        self._install(*feature_tables(self._items, self._vectors, self._stats))

    def _install(
        self, builder: FeatureBuilder, trending: np.ndarray, orders: tuple[np.ndarray, ...]
    ) -> None:
        self._builder, self._trending, self._orders = builder, trending, orders
        self._tables_generation += 1

    def _refresh_stats_if_stale(self) -> None:
        if not self._stats_dirty or self._stats_thread is not None:
            return
        if time.monotonic() - self._stats_built_at < self.stats_refresh_seconds:
            return
        if self._stats_build_seconds < self.inline_rebuild_seconds:
            self._rebuild_stats()
        else:
            self._rebuild_stats_in_background()

    def swap_ranker(self, ranker: Ranker) -> dict[str, np.ndarray]:
        """Serve `ranker` from now on; returns the item vectors it had to compute.

        The slow work happens while requests keep the old ranker, outside the lock: embedding
        the catalog with the new encoder (reusing `ranker.vectors`), building the index, counting
        the event log with the ranker's trending window and the feature tables (tens of seconds
        at a million items). Then the new state replaces the old in one step under the lock.
        Items added, edited or removed meanwhile are applied in that step (only they are
        embedded there); events that arrived meanwhile are counted at the next refresh.
        """
        encoder = ranker.encoder
        encoder.load()
        with self._lock:
            items, active = list(self._items), self._active.copy()
            events, events_generation = self._counted_events(), self._events_generation
            builder = self._builder  # of these items
        query_encoder = query_encoder_for(encoder, self.quantize_queries, len(items))
        vectors, computed = self._vectors_for(items, ranker.vectors, encoder)
        index = self.index_factory(encoder.dimension)
        listed = np.flatnonzero(active)
        if len(listed):
            index.add([items[i].item_id for i in listed], vectors[listed])
        if builder is None:  # never built: nothing serves yet
            stats = self._count(attribute_of(items, "item_id"), events, ranker)
            tables = feature_tables(items, vectors, stats)
        else:  # in a child process, over the serving builder's (same) item ids and tables
            stats = self._count(builder.item_ids, events, ranker, position=builder.position)
            tables = tables_of(builder.with_stats(stats, vectors))
        if ranker.sequence is not None:  # here, not in the first request (seconds at 1M items)
            tables[0].sequence_table(ranker.sequence)
        with self._lock:
            now = self._items
            changed = [i for i, item in enumerate(now) if i >= len(items) or item is not items[i]]
            if changed:
                extra, more = self._vectors_for([now[i] for i in changed], {}, encoder)
                grown = np.zeros((len(now), encoder.dimension), dtype=np.float32)
                grown[: len(items)] = vectors
                grown[changed] = extra
                vectors, computed = grown, computed | more
            listed_now = self._active[: len(active)]
            returned = np.flatnonzero(~active & listed_now).tolist()  # re-added, same object
            relisted = [i for i in sorted({*changed, *returned}) if self._active[i]]
            if relisted:
                index.add([now[i].item_id for i in relisted], vectors[relisted])
            delisted = np.flatnonzero(active & ~listed_now)
            if len(delisted):
                index.remove([items[i].item_id for i in delisted])
            self.encoder, self.combiner, self.sequence = encoder, ranker.combiner, ranker.sequence
            self._query_encoder = query_encoder
            self.trending_window, self.neighbours = ranker.trending_window, ranker.neighbours
            self.model_version, self.model_info = ranker.version, dict(ranker.info)
            self._vectors, self._index = vectors, index
            # items added meanwhile need new tables (seconds at 1M items, rare)
            self._use_stats(stats, None if changed else tables)
            # events that came meanwhile
            self._stats_dirty = self._events_generation != events_generation
        logger.info(
            "ranker %s now serves: %d items, %d vectors computed, %d item edits during the swap",
            ranker.version,
            len(now),
            len(computed),
            len(changed),
        )
        return computed

    def tune_combiner(self, settings: RankerSettings | None = None) -> dict[str, float]:
        """Fit the combiner on the event log (each user's last new item); returns its metrics.

        The fit reads the vector matrix without copying it under the lock (1.5 GB at a million
        items): edits replace rows in place, so an item edited meanwhile is read at either
        version, and new items grow a new matrix that this snapshot does not see.
        """
        with self._lock:
            items, vectors, events = list(self._items), self._vectors, self._counted_events()
            neighbours = self.neighbours
        # fitted on the co-occurrence table this recommender serves with
        settings = settings or RankerSettings(neighbours=neighbours)
        combiner, metrics = tune_combiner(items, vectors, events, self.encoder, settings)
        self.combiner = combiner
        return metrics

    # ------------------------------------------------------------------ catalog
    def vector_of(self, item_id: str) -> np.ndarray | None:
        with self._lock:
            position = self._position.get(item_id)
            if position is None or not self._active[position]:
                return None
            return self._vectors[position].copy()

    def has_item(self, item_id: str) -> bool:
        with self._lock:
            position = self._position.get(item_id)
            return position is not None and bool(self._active[position])

    def upsert_items(
        self, items: Sequence[Item], vectors: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Add or replace items; they are searchable and rankable on return. Returns vectors.

        The edited catalog's vector matrix and feature tables (seconds at a million items) are
        computed from a snapshot outside the lock, and installed in one short step when no other
        edit, ranker swap or statistics rebuild landed meanwhile. Otherwise they are computed
        again; the last of `EDIT_ATTEMPTS` holds the lock throughout. The sequence ranker's item
        table of the new state is computed before returning, so the editor waits for it, not
        the next customer.
        """
        encoder = self.encoder
        matrix, computed = self._vectors_for(items, vectors or {}, encoder)
        rows = sorted({item.item_id: row for row, item in enumerate(items)}.values())  # last wins
        for attempt in range(1, EDIT_ATTEMPTS + 1):
            with self._lock if attempt == EDIT_ATTEMPTS else contextlib.nullcontext():
                if self.encoder is not encoder:  # the ranker was swapped: embed with its encoder
                    encoder = self.encoder
                    matrix, computed = self._vectors_for(items, {}, encoder)
                with self._lock:
                    generation, stats = self._tables_generation, self._stats
                    before, before_vectors = self._items, self._vectors
                    known = {items[r].item_id: self._position.get(items[r].item_id) for r in rows}
                added = [row for row in rows if known[items[row].item_id] is None]
                new_position = {row: len(before) + i for i, row in enumerate(added)}
                after = list(before)
                for row in rows:
                    position = known[items[row].item_id]
                    if position is not None:
                        after[position] = items[row]
                after.extend(items[row] for row in added)
                after_vectors = (
                    np.vstack([before_vectors, matrix[added]]) if added else before_vectors
                )
                tables = feature_tables(after, after_vectors, stats)
                with self._lock:
                    if (
                        generation != self._tables_generation
                        or stats is not self._stats
                        or encoder is not self.encoder
                    ):
                        continue  # another change landed meanwhile: start again from it
                    for row in rows:
                        item, position = items[row], known[items[row].item_id]
                        self.catalog.add(item)
                        if position is None:
                            self._position[item.item_id] = new_position[row]
                        else:
                            after_vectors[position] = matrix[row]
                            self._active[position] = True
                    self._items, self._vectors = after, after_vectors
                    if added:
                        grown = np.ones(len(added), dtype=bool)
                        self._active = np.concatenate([self._active, grown])
                    self._index.add([items[row].item_id for row in rows], matrix[rows])
                    self._install(*tables)
                    break
        self._prepare_sequence_table()
        return {item.item_id: matrix[row] for row, item in enumerate(items)} | computed

    def _prepare_sequence_table(self) -> None:
        """Compute the serving builder's sequence item table now, in the caller's thread (a
        start, an item edit), rather than in the next customer request (seconds at a million
        items)."""
        with self._lock:
            builder, sequence = self._builder, self.sequence
        if sequence is not None:
            builder.sequence_table(sequence)

    def remove_item(self, item_id: str) -> bool:
        """Stop recommending an item; returns False when it was not in the catalog."""
        with self._lock:
            position = self._position.get(item_id)
            if position is None or not self._active[position]:
                return False
            self._active[position] = False
            self.catalog.remove(item_id)
            self._index.remove([item_id])
            return True

    # ------------------------------------------------------------------ events
    def add_events(self, events: Sequence[Event]) -> None:
        """Count new events in popularity/co-occurrence (applied at the next refresh)."""
        with self._lock:
            if self._event_log is not None:
                raise ValueError(
                    "this recommender counts a shared event log (count_events_from): add the "
                    "events to that log (SharedEvents.counted), not to the recommender"
                )
            self._events.extend(events)
            self._events_changed()

    def count_events_from(
        self, log: Callable[[], Sequence[Event]], *, changed: bool = True
    ) -> None:
        """Count the events `log()` answers from now on (asked at each statistics rebuild;
        call `events_changed` when they change) instead of its own list; `changed`: they differ
        from what it counts now. Several recommenders can share one log, held once in memory.

        `log` must not wait for a lock that is held while calling this recommender.
        """
        with self._lock:
            self._event_log, self._events = log, []
            if changed:
                self._events_changed()

    def events_changed(self) -> None:
        """The log given to `count_events_from` changed: recount it at the next refresh."""
        with self._lock:
            self._events_changed()

    def _events_changed(self) -> None:
        self._events_generation += 1
        self._stats_dirty = True

    def _counted_events(self) -> Sequence[Event]:
        """The events it counts, a snapshot no later change alters (call with the lock)."""
        return list(self._events) if self._event_log is None else self._event_log()

    def events(self) -> list[Event]:
        """The event log this recommender counts (seed log, then events as added), a copy."""
        with self._lock:
            return list(self._counted_events())

    # ------------------------------------------------------------------ queries
    def recommend(
        self,
        user_id: str,
        history: Sequence[Event],
        *,
        k: int = 10,
        offset: int = 0,
        category: str | None = None,
        diversity: float = 0.0,
        exclude_seen: bool = True,
        exclude_purchased: bool = True,
        purchased: Collection[str] = (),
        depth: int = 0,
    ) -> RecommendationList:
        """Rank items for a user; an empty or unknown history gets the cold-start list.

        `purchased`: items the user bought besides those in `history` (older than it reaches),
        excluded too with `exclude_purchased`. With `depth`, at least that many are ranked
        and returned in `ranked` (for a snapshot later pages are cut from: `page_of`).
        """
        with self._lock:
            self._refresh_stats_if_stale()
            builder = self._builder
            active = self._active.copy()
            trending = self._trending
            popularity_order, trending_order = self._orders
            index = self._index
            encoder, combiner, sequence_model = self._query_encoder, self.combiner, self.sequence
            version = self.model_version
        profile = builder.profile(user_id, history)
        allowed = _allowed_for(
            builder, profile, active, category, exclude_seen, exclude_purchased, purchased
        )
        # one extra so the page knows whether another follows
        needed = max(offset + k + 1, depth)
        tiers = pool_tiers(self.candidate_pool, 2 * (needed - 1))
        if profile.is_cold:
            neighbours, cooc, sequence = [], None, None
        else:
            # the sequence scores over every item (on this thread) and the rest of the
            # profile's signals (on a pool thread) do not depend on each other, and both
            # release the GIL for their costly parts: at 1M items 15-20 ms less per request
            job = QUERY_POOL.submit(profile_signals, builder, index, encoder, profile, tiers[-1])
            sequence = (
                builder.sequence_scores(sequence_model, [profile])[0]
                if sequence_model is not None
                else None
            )
            neighbours, cooc, recent, query = job.result()

        def generate(pool: int) -> np.ndarray:
            return generate_candidates(
                allowed=allowed,
                pool=pool,
                popularity=builder.popularity,
                trending=trending,
                neighbour_positions=neighbours[:pool],
                cooccurrence=cooc,
                sequence=sequence,
                popularity_order=popularity_order,
                trending_order=trending_order,
            )

        # a cold profile's popular + trending give about half a pool: it grows while items are
        # left (a warm one's neighbours were searched for the last tier only)
        candidates, tier_of = tiered_candidates(
            generate, tiers, at_least=needed if profile.is_cold else 0, largest=builder.n
        )
        if profile.is_cold:
            scores = (
                COLD_POPULARITY_WEIGHT * builder.popularity[candidates]
                + (1 - COLD_POPULARITY_WEIGHT) * trending[candidates]
            )
            contributions = None
        else:
            features = builder.features(
                profile,
                query,
                candidates,
                trending,
                cooccurrence=cooc,
                recent_cooccurrence=recent,
                sequence=sequence,
            )
            scores = combiner.score(features)
            contributions = combiner.contributions(features)
            if self.new_item_slot and sequence is not None:
                scores = new_item_slot(  # candidates are allowed items only
                    scores,
                    builder.popularity[candidates] == 0,
                    features[:, SEQUENCE_COLUMN],
                    k,
                )
        ranked = rank_by_tier(
            candidates, scores, tier_of, builder.vectors, k=needed, diversity=diversity
        )
        page = paginate(ranked, offset=offset, k=k)
        row_of = {int(p): i for i, p in enumerate(candidates)}
        results = [
            Recommendation(
                item=builder.items[p],
                score=float(scores[row_of[p]]),
                **self._explain(
                    builder, profile, active, p, category, _why(contributions, row_of[p])
                ),
            )
            for p in page.positions
        ]
        kept = [(p, row_of[p]) for p in ranked] if depth else []  # for a snapshot
        return RecommendationList(
            user_id=user_id,
            items=results,
            cold_start=profile.is_cold,
            offset=offset,
            next_offset=page.next_offset,
            next_cursor=page.next_cursor,
            model_version=version,
            ranked=[
                Ranked(builder.items[p].item_id, float(scores[row]), _why(contributions, row))
                for p, row in kept
            ],
        )

    def page_of(
        self,
        user_id: str,
        history: Sequence[Event],
        ranked: Sequence[Ranked],
        *,
        k: int,
        offset: int,
        category: str | None = None,
        exclude_seen: bool = True,
        exclude_purchased: bool = True,
        purchased: Collection[str] = (),
    ) -> tuple[list[Recommendation], int | None]:
        """The next `k` items of a list ranked before (`recommend(depth=...)`) from `offset`,
        skipping those no longer allowed (deleted, bought or seen since), and the offset in
        `ranked` after them (None when no allowed item follows). Reasons use today's history."""
        with self._lock:
            self._refresh_stats_if_stale()
            builder, active = self._builder, self._active.copy()
        profile = builder.profile(user_id, history)
        allowed = _allowed_for(
            builder, profile, active, category, exclude_seen, exclude_purchased, purchased
        )
        page: list[Recommendation] = []
        for at in range(offset, len(ranked)):
            entry = ranked[at]
            position = builder.position.get(entry.item_id)
            if position is None or position >= builder.n or not allowed[position]:
                continue
            if len(page) == k:
                return page, at
            reason = self._explain(builder, profile, active, position, category, entry.why)
            page.append(Recommendation(item=builder.items[position], score=entry.score, **reason))
        return page, None

    def _explain(
        self,
        builder: FeatureBuilder,
        profile: UserProfile,
        active: np.ndarray,
        position: int,
        category: str | None,
        why: str,
    ) -> dict[str, Any]:
        """Why the item is recommended: the history item most like it, when a text feature
        decided (`why`, see `_why`; a deleted one never: its page is gone), else why it is
        popular."""
        popular = f"Popular in {category}" if category else "Popular with other shoppers"
        if why != "text":
            return {"reason": "Trending now" if why == "trending" else popular}
        recent = profile.events[-REASON_HISTORY:]
        target = builder.vectors[position]
        stats = builder.stats
        best, best_score = None, -np.inf
        for event in recent:
            source = builder.position[event.item_id]
            if not active[source]:
                continue
            together = stats.pair_similarity(
                stats.position.get(event.item_id, -1),
                stats.position.get(builder.items[position].item_id, -1),
            )
            score = float(builder.vectors[source] @ target) + together
            if score > best_score:
                best, best_score = event, score
        if best is None:
            return {"reason": popular}
        title = builder.by_id[best.item_id].title
        return {
            "reason": f"Because you {EVENT_VERBS[best.event]} \u201c{title}\u201d",
            "because": best.item_id,
        }

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items most like `item_id` (itself excluded): text first, see `similar_items`;
        co-occurrence counted from the events `recommend` counts (recounted when stale)."""
        with self._lock:
            position = self._position.get(item_id)
            if position is None or not self._active[position]:
                return []
            self._refresh_stats_if_stale()
            vector = self._vectors[position]
            index = self._index
            items = self._items
            lookup = self._position  # only ever grows; a copy per request costs O(catalog)
            stats = self._stats
        hits = [
            (hit, score)
            for hit, score in index.search(vector[None, :], min(pool_size(k) + 1, len(index)))[0]
            if hit != item_id and hit in lookup
        ]
        query = items[position]
        query_in_stats = stats.position.get(item_id, -1)
        ranked = rank_similar(
            [score for _, score in hits],
            query.categories,
            [items[lookup[hit]].categories for hit, _ in hits],
            lambda row: stats.pair_similarity(query_in_stats, stats.position.get(hits[row][0], -1)),
            k,
        )
        return [
            Recommendation(
                item=items[lookup[hits[row][0]]],
                score=score,
                reason=f"Similar to \u201c{query.title}\u201d",
                because=item_id,
            )
            for row, score in ranked
        ]

    @property
    def item_count(self) -> int:
        with self._lock:
            return int(self._active.sum())

    @property
    def statistics_rebuild_seconds(self) -> float:
        """How long the last rebuild of the interaction statistics took (0 before the first);
        above `inline_rebuild_seconds` the next one runs in the background."""
        return self._stats_build_seconds
