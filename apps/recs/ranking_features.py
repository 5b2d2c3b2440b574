"""Ranking features: what the ranker knows about each (user, candidate item) pair."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import (
    InteractionStats,
    attribute_of,
    index_of,
    keyed,
    lookup,
)
from threefold.apps.recs.catalog import Item, split_categories
from threefold.apps.recs.events import Event
from threefold.apps.recs.profiles import UserProfile, build_profile

FEATURES = (
    "text",
    "profile",
    "cooccurrence",
    "recent_cooccurrence",
    "popularity",
    "trending",
    "category",
    "sequence",
)
SEQUENCE_COLUMN = FEATURES.index("sequence")
# catalog size from which a request's history text is embedded by the int8 twin by default
# (the size from which FaissIndex searches approximately: where latency, not exactness, binds)
QUANTIZE_QUERIES_FROM = 20_000


def sequence_order(positions: Sequence[int]) -> list[int]:
    """A history's distinct items in first-interaction order: the sequence ranker's input."""
    return list(dict.fromkeys(positions))


def category_table(items: Sequence[Item]) -> tuple[dict[str, int], np.ndarray]:
    """Each category name's column, and the (items, categories) 0/1 matrix of membership.

    Parsed once per distinct `category` string (a catalog has few), not once per item.
    """
    raw = attribute_of(items, "category")
    distinct = list(dict.fromkeys(raw))
    parsed = [split_categories(value) for value in distinct]
    names = sorted({name for names in parsed for name in names})
    index = {name: i for i, name in enumerate(names)}
    per_value = np.zeros((len(distinct), len(names)), dtype=np.float32)
    for row, value_names in enumerate(parsed):
        per_value[row, [index[name] for name in value_names]] = 1.0
    return index, per_value[lookup(index_of(distinct), raw)]


class FeatureBuilder:
    """Ranking features for one user over candidate item positions.

    `items` and `vectors` are aligned (row i is item i); `stats` may cover a different item
    set (items added after the last rebuild get zero interaction features).
    """

    def __init__(self, items: Sequence[Item], vectors: np.ndarray, stats: InteractionStats) -> None:
        self.items = list(items)
        self.vectors = vectors
        self.stats = stats
        self.n = len(self.items)
        # a slice at a time, as in InteractionStats: a background rebuild builds this beside
        # requests at 1M items
        self.item_ids = attribute_of(self.items, "item_id")
        self.position = index_of(self.item_ids)
        self._sequence_table: tuple[Any, Any] | None = None
        self._table_lock = threading.Lock()
        self.by_id = keyed(self.item_ids, self.items)
        # stats follow their own item order; map between the two
        self._to_stats = lookup(stats.position, self.item_ids)
        self._from_stats = lookup(self.position, stats.item_ids)
        # after a rebuild both orders agree: remap is then a no-op (a copy per request at 1M)
        self._same_order = self.n == len(stats.item_ids) and bool(
            np.array_equal(self._from_stats, np.arange(self.n))
        )
        self.popularity = self.remap(stats.popularity())
        self.category_index, self.category_matrix = category_table(self.items)

    def remap(self, values: np.ndarray) -> np.ndarray:
        """Values in stats order (last axis) -> this builder's item order (0 for unknown items).

        Returns `values` itself when the orders agree: treat the result as read-only.
        """
        if self._same_order:
            return np.asarray(values, dtype=np.float32)
        out = np.zeros((*values.shape[:-1], self.n), dtype=np.float32)
        known = self._from_stats >= 0
        out[..., self._from_stats[known]] = values[..., known]
        return out

    def trending_rows(self, moments: np.ndarray) -> np.ndarray:
        return self.remap(self.stats.trending_at(moments))

    def profile(self, user_id: str, events: Sequence[Event]) -> UserProfile:
        return build_profile(
            user_id, events, position=self.position, vectors=self.vectors, items=self.by_id
        )

    def cooccurrence(self, profile: UserProfile, *, recent: bool = False) -> np.ndarray:
        """Item-kNN score of every item for the profile, scaled so the best is 1."""
        stats_positions = self._to_stats[profile.positions].tolist() if profile.positions else []
        weights = profile.recent_weights if recent else profile.weights
        scores = self.remap(self.stats.cooccurrence(stats_positions, weights))
        top = float(scores.max()) if self.n else 0.0
        return scores / top if top > 0 else scores

    def features(
        self,
        profile: UserProfile,
        query: np.ndarray | None,
        candidates: np.ndarray,
        trending: np.ndarray,
        *,
        cooccurrence: np.ndarray | None = None,
        recent_cooccurrence: np.ndarray | None = None,
        sequence: np.ndarray | None = None,
    ) -> np.ndarray:
        """(len(candidates), len(FEATURES)) float32; `sequence` scores every item (or None)."""
        m = len(candidates)
        out = np.zeros((m, len(FEATURES)), dtype=np.float32)
        if m == 0:
            return out
        vectors = self.vectors[candidates]
        if query is not None:
            out[:, 0] = vectors @ query
        if profile.vector is not None:
            out[:, 1] = vectors @ profile.vector
        if profile.positions:
            cooc = self.cooccurrence(profile) if cooccurrence is None else cooccurrence
            recent = (
                self.cooccurrence(profile, recent=True)
                if recent_cooccurrence is None
                else recent_cooccurrence
            )
            out[:, 2] = cooc[candidates]
            out[:, 3] = recent[candidates]
        out[:, 4] = self.popularity[candidates]
        out[:, 5] = trending[candidates]
        if profile.category_preference and self.category_index:
            preference = np.zeros(len(self.category_index), dtype=np.float32)
            for category, share in profile.category_preference.items():
                if category in self.category_index:
                    preference[self.category_index[category]] = share
            out[:, 6] = np.minimum(self.category_matrix[candidates] @ preference, 1.0)
        if sequence is not None:
            out[:, SEQUENCE_COLUMN] = sequence[candidates]
        return out

    def sequence_scores(self, model: Any, profiles: Sequence[UserProfile]) -> np.ndarray:
        """(users, items) next-item scores of the sequence ranker for these profiles.

        The model's item table (every item through its text and ID layers) is computed once
        per builder and model, not per request: a builder's items and vectors do not change
        (an edit or a ranker swap installs a new builder), and neither do a served model's
        weights.
        """
        histories = [sequence_order(p.positions) for p in profiles]
        table = self.sequence_table(model)
        return model.scores(histories, self.vectors, self.item_ids, table=table)

    def with_stats(
        self, stats: InteractionStats, vectors: np.ndarray | None = None
    ) -> FeatureBuilder:
        """This builder's items over new statistics (a rebuild after new events) and, for a
        ranker swap, new `vectors` (default: this builder's).

        When `stats` were counted over this builder's own `item_ids` list, every item-side
        table is shared (ids, positions, categories and, with the same vectors, the sequence
        item table: seconds of work at 1M items, and requests beside the rebuild would wait for
        its interpreter lock); otherwise the builder is made anew.
        """
        vectors = self.vectors if vectors is None else vectors
        if stats.item_ids is not self.item_ids:
            return FeatureBuilder(self.items, vectors, stats)
        builder = copy.copy(self)
        if vectors is not self.vectors:
            builder.vectors, builder._sequence_table = vectors, None
        builder.stats = stats
        builder._to_stats = builder._from_stats = np.arange(self.n)
        builder._same_order = True
        builder.popularity = builder.remap(stats.popularity())
        builder._table_lock = threading.Lock()
        return builder

    def sequence_table(self, model: Any) -> Any:
        """`model`'s item table over this builder's items, computed once per builder and model
        (requests arriving while it is computed wait for it instead of computing it again)."""
        cached = self._sequence_table
        if cached is None or cached[0] is not model:
            with self._table_lock:
                cached = self._sequence_table
                if cached is None or cached[0] is not model:
                    cached = (model, model.item_table(self.vectors, self.item_ids))
                    self._sequence_table = cached
        return cached[1]


def user_feature_tensor(
    builder: FeatureBuilder,
    encoder: Any,
    histories: Mapping[str, Sequence[Event]],
    users: Sequence[str],
    sequence_model: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every item for each user: (users, items, features) and a seen-item mask.

    Without a `sequence_model` the sequence feature is 0.
    """
    profiles = [builder.profile(u, histories[u]) for u in users]
    sequence = (
        builder.sequence_scores(sequence_model, profiles) if sequence_model is not None else None
    )
    queries = encoder.encode([p.text for p in profiles]) if profiles else None
    moments = np.array([p.events[-1].timestamp if p.events else 0.0 for p in profiles])
    trending = builder.trending_rows(moments)
    all_items = np.arange(builder.n)
    tensor = np.zeros((len(users), builder.n, len(FEATURES)), dtype=np.float32)
    seen = np.zeros((len(users), builder.n), dtype=bool)
    for row, profile in enumerate(profiles):
        query = queries[row] if profile.text else None
        tensor[row] = builder.features(
            profile,
            query,
            all_items,
            trending[row],
            sequence=None if sequence is None else sequence[row],
        )
        seen[row, profile.positions] = True
    return tensor, seen


def quantize_queries_for(setting: bool | None, n_items: int) -> bool:
    """Whether history texts go through the int8 twin: `setting` when given; unset (None), from
    QUANTIZE_QUERIES_FROM catalog items up, where the per-request latency needs it (the
    1M-item benchmark), and fp32 below, where the list equals the benchmark's ranking."""
    return n_items >= QUANTIZE_QUERIES_FROM if setting is None else bool(setting)


def query_encoder_for(encoder: Any, quantize: bool | None, n_items: int = 0) -> Any:
    """The encoder of per-request history texts: an int8 twin of a loaded CPU embedder when
    `quantize_queries_for(quantize, n_items)`, else `encoder` itself (GPU encoders and other
    encoders stay as they are).
    """
    twin = getattr(encoder, "quantized_twin", None)
    on_cpu = getattr(encoder, "device", None) == "cpu"
    if not quantize_queries_for(quantize, n_items) or twin is None or not on_cpu:
        return encoder
    return twin()
