"""The learned ranker: a fine-tuned text encoder plus a combiner over ranking features.

The text part is a bi-encoder fine-tuned from the core MiniLM body on (user history text,
next item text) pairs with in-batch negatives (core `Embedder.fine_tune`). The combiner is a
linear scorer over standardized features, fit by pairwise logistic regression (held-out item
vs sampled negatives) on a validation split (each user's last training interaction), then
tuned by coordinate search on that split's NDCG@k. The test interaction is never used.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY, InteractionStats
from threefold.apps.recs.catalog import Item
from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.profiles import (
    HISTORY_TEXT_ITEMS,
    UserProfile,
    build_profile,
    history_text,
)
from threefold.apps.recs.ranking_metrics import rank_of_targets, summarize
from threefold.core.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

FEATURES = (
    "text",
    "profile",
    "cooccurrence",
    "recent_cooccurrence",
    "popularity",
    "trending",
    "category",
)
DEFAULT_WEIGHTS = {
    "text": 1.0,
    "profile": 1.0,
    "cooccurrence": 1.0,
    "recent_cooccurrence": 1.0,
    "popularity": 0.3,
    "trending": 0.3,
    "category": 0.5,
}
COMBINER_FILE = "combiner.json"
MODEL_FILE = "ranker.json"
ENCODER_DIR = "encoder"


@dataclass
class RankerSettings:
    """How the ranker is trained; sizes are capped so MovieLens-100k trains in minutes on CPU."""

    fine_tune: bool = True
    max_pairs: int = 4000
    max_steps: int = 40
    batch_size: int = 16
    max_length: int = 64
    learning_rate: float = 5e-5
    negatives: int = 60
    tune_rounds: int = 3
    k: int = 10
    trending_window_days: float = 14.0
    neighbours: int | None = None
    seed: int = 13

    def __post_init__(self) -> None:
        for name in ("max_pairs", "max_steps", "batch_size", "max_length", "negatives", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"RankerSettings.{name} must be a positive integer, found {value!r}"
                )
        if self.batch_size < 2:
            raise ConfigError(
                "RankerSettings.batch_size must be >= 2 for in-batch negatives, "
                f"found {self.batch_size}"
            )
        if self.learning_rate <= 0 or self.trending_window_days <= 0 or self.tune_rounds < 0:
            raise ConfigError(
                "learning_rate and trending_window_days must be > 0 and tune_rounds >= 0; found "
                f"{self.learning_rate!r}, {self.trending_window_days!r}, {self.tune_rounds!r}"
            )


@dataclass
class LinearCombiner:
    """score = sum_f weight_f * (x_f - mean_f) / scale_f."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    mean: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    scale: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 1.0))

    def vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.array([self.weights.get(f, 0.0) for f in FEATURES], dtype=np.float32)
        mu = np.array([self.mean.get(f, 0.0) for f in FEATURES], dtype=np.float32)
        sd = np.array([self.scale.get(f, 1.0) or 1.0 for f in FEATURES], dtype=np.float32)
        return w, mu, sd

    def score(self, features: np.ndarray) -> np.ndarray:
        w, mu, sd = self.vectors()
        return ((features - mu) / sd) @ w

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Per-feature share of each score (rows x features), for explanations."""
        w, mu, sd = self.vectors()
        return ((features - mu) / sd) * w

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearCombiner:
        unknown = sorted(set(data.get("weights", {})) - set(FEATURES))
        if unknown:
            raise ModelError(
                f"combiner has unknown features {unknown}; expected a subset of {sorted(FEATURES)}"
            )
        return cls(
            weights=dict(data["weights"]), mean=dict(data["mean"]), scale=dict(data["scale"])
        )

    @classmethod
    def fit_pairwise(
        cls, positives: np.ndarray, negatives: Sequence[np.ndarray], *, l2: float = 1.0
    ) -> LinearCombiner:
        """Pairwise logistic regression: P(positive beats negative) = sigmoid(w . (x+ - x-))."""
        stacked = np.concatenate(
            [positives[None, :] if positives.ndim == 1 else positives, *negatives]
        )
        mean = stacked.mean(axis=0)
        scale = stacked.std(axis=0)
        scale[scale < 1e-6] = 1.0
        diffs = np.concatenate(
            [(positives[i] - negatives[i]) / scale for i in range(len(negatives))]
        ).astype(np.float64)
        weights = np.zeros(len(FEATURES))
        for _ in range(50):
            margin = diffs @ weights
            prob = 1.0 / (1.0 + np.exp(-margin))
            gradient = -diffs.T @ (1.0 - prob) + l2 * weights
            hessian = (diffs * (prob * (1 - prob))[:, None]).T @ diffs + l2 * np.eye(len(FEATURES))
            step = np.linalg.solve(hessian, gradient)
            weights -= step
            if np.abs(step).max() < 1e-6:
                break
        return cls(
            weights=dict(zip(FEATURES, map(float, weights), strict=True)),
            mean=dict(zip(FEATURES, map(float, mean), strict=True)),
            scale=dict(zip(FEATURES, map(float, scale), strict=True)),
        )


class FeatureBuilder:
    """Ranking features for one user over candidate item positions.

    `items` and `vectors` are aligned (row i is item i); `stats` may cover a different item
    set (items added after the last rebuild get zero interaction features).
    """

    def __init__(self, items: Sequence[Item], vectors: np.ndarray, stats: InteractionStats) -> None:
        self.items = list(items)
        self.vectors = vectors
        self.stats = stats
        self.position = {item.item_id: i for i, item in enumerate(self.items)}
        self.by_id = {item.item_id: item for item in self.items}
        self.n = len(self.items)
        # stats follow their own item order; map between the two
        self._to_stats = np.array(
            [stats.position.get(i.item_id, -1) for i in self.items], dtype=np.int64
        )
        self._from_stats = np.array(
            [self.position.get(i, -1) for i in stats.item_ids], dtype=np.int64
        )
        self.popularity = self.remap(stats.popularity())
        categories = sorted({c for item in self.items for c in item.categories})
        self.category_index = {c: i for i, c in enumerate(categories)}
        self.category_matrix = np.zeros((self.n, len(categories)), dtype=np.float32)
        for i, item in enumerate(self.items):
            for category in item.categories:
                self.category_matrix[i, self.category_index[category]] = 1.0

    def remap(self, values: np.ndarray) -> np.ndarray:
        """Values in stats order (last axis) -> this builder's item order (0 for unknown items)."""
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
    ) -> np.ndarray:
        """(len(candidates), len(FEATURES)) float32."""
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
        return out


def training_pairs(
    sequences: Sequence[Sequence[Item]], *, max_pairs: int, seed: int
) -> list[tuple[str, str]]:
    """(history text, next item text) pairs, spread evenly over users, at most `max_pairs`."""
    rng = random.Random(seed)
    usable = [s for s in sequences if len(s) >= 2]
    if not usable:
        return []
    per_user = max(1, max_pairs // len(usable))
    pairs: list[tuple[str, str]] = []
    for sequence in usable:
        steps = list(range(1, len(sequence)))
        for t in rng.sample(steps, min(per_user, len(steps))):
            pairs.append(
                (history_text(sequence[:t], max_items=HISTORY_TEXT_ITEMS), sequence[t].text)
            )
    rng.shuffle(pairs)
    return pairs[:max_pairs]


@dataclass
class RankerModel:
    """A trained ranker: text encoder (core Embedder) + combiner + training facts."""

    encoder: Any
    combiner: LinearCombiner
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def trending_window(self) -> float:
        return float(self.info.get("trending_window_days", 14.0)) * DAY

    @property
    def neighbours(self) -> int | None:
        return self.info.get("neighbours")

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save(path / ENCODER_DIR)
        (path / COMBINER_FILE).write_text(json.dumps(self.combiner.to_dict(), indent=2))
        (path / MODEL_FILE).write_text(json.dumps(self.info, indent=2, default=str))

    @classmethod
    def load(cls, path: str | Path, **encoder_kwargs: Any) -> RankerModel:
        from threefold.core.embedder import Embedder

        path = Path(path)
        missing = [
            name for name in (ENCODER_DIR, COMBINER_FILE, MODEL_FILE) if not (path / name).exists()
        ]
        if missing:
            raise ModelError(
                f"{path} is not a recommendation model folder: missing {missing}. "
                "Fix: build one with `threefold recs build --items ... --events ... --out DIR`."
            )
        combiner = LinearCombiner.from_dict(json.loads((path / COMBINER_FILE).read_text()))
        info = json.loads((path / MODEL_FILE).read_text())
        encoder = Embedder.from_dir(path / ENCODER_DIR, **encoder_kwargs)
        return cls(encoder=encoder, combiner=combiner, info=info)


def split_last(events: Sequence[Event]) -> tuple[list[Event], dict[str, Event]]:
    """Hide each user's last new item: (events before it, hidden event by user).

    The hidden event is the user's last event on an item they had not touched before; later
    repeat events (a click after a view) are dropped. Users with one item keep their history.
    """
    remaining: list[Event] = []
    hidden: dict[str, Event] = {}
    for user_id, history in group_by_user(events).items():
        first_seen: dict[str, int] = {}
        for index, event in enumerate(history):
            first_seen.setdefault(event.item_id, index)
        last_new = max(first_seen.values())
        if len(first_seen) >= 2:
            hidden[user_id] = history[last_new]
            remaining.extend(history[:last_new])
        else:
            remaining.extend(history)
    return remaining, hidden


def tune_combiner(
    items: Sequence[Item],
    vectors: np.ndarray,
    events: Sequence[Event],
    encoder: Any,
    settings: RankerSettings | None = None,
) -> tuple[LinearCombiner, dict[str, float]]:
    """Fit the combiner on each user's last new item, with item vectors already computed."""
    settings = settings or RankerSettings()
    train_events, validation = split_last(events)
    stats = InteractionStats(
        [item.item_id for item in items],
        train_events,
        neighbours=settings.neighbours,
        trending_window=settings.trending_window_days * DAY,
    )
    builder = FeatureBuilder(items, vectors, stats)
    return fit_combiner(builder, encoder, train_events, validation, settings)


def train_ranker(
    items: Sequence[Item],
    events: Sequence[Event],
    *,
    settings: RankerSettings | None = None,
    base_model: str | None = None,
    encoder: Any = None,
) -> RankerModel:
    """Fine-tune the text encoder and fit the combiner on each user's last event (validation).

    `encoder` (an unloaded or loaded core Embedder) is fine-tuned in place when given; by
    default a fresh one is loaded from `base_model`.
    """
    from threefold.core.embedder import Embedder

    settings = settings or RankerSettings()
    started = time.perf_counter()
    train_events, validation = split_last(events)
    by_id = {item.item_id: item for item in items}
    if encoder is None:
        encoder = Embedder(base_model, max_length=settings.max_length)
    encoder.load()
    info: dict[str, Any] = {
        "settings": asdict(settings),
        "trending_window_days": settings.trending_window_days,
        "neighbours": settings.neighbours,
        "history_items": HISTORY_TEXT_ITEMS,
        "validation_users": len(validation),
    }
    if settings.fine_tune:
        sequences = [
            [by_id[e.item_id] for e in history if e.item_id in by_id]
            for history in group_by_user(train_events).values()
        ]
        # one epoch of at most max_steps batches: more pairs than that would never be seen
        budget = min(settings.max_pairs, settings.max_steps * settings.batch_size)
        pairs = training_pairs(sequences, max_pairs=budget, seed=settings.seed)
        logger.info(
            "fine-tuning the text ranker on %d pairs (max %d steps)", len(pairs), settings.max_steps
        )
        if len(pairs) >= 2:
            info["fine_tune"] = encoder.fine_tune(
                pairs,
                epochs=1,
                batch_size=min(settings.batch_size, len(pairs)),
                learning_rate=settings.learning_rate,
                max_steps=settings.max_steps,
                show_progress=True,
            )
        info["pairs"] = len(pairs)
    vectors = encoder.encode([item.text for item in items], show_progress=True)
    combiner, val_metrics = tune_combiner(items, vectors, events, encoder, settings)
    info["validation"] = val_metrics
    info["train_seconds"] = round(time.perf_counter() - started, 2)
    logger.info("ranker trained in %.1fs; validation %s", info["train_seconds"], val_metrics)
    return RankerModel(encoder=encoder, combiner=combiner, info=info)


def user_feature_tensor(
    builder: FeatureBuilder,
    encoder: Any,
    histories: Mapping[str, Sequence[Event]],
    users: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every item for each user: (users, items, features) and a seen-item mask."""
    profiles = [builder.profile(u, histories[u]) for u in users]
    queries = encoder.encode([p.text for p in profiles]) if profiles else None
    moments = np.array([p.events[-1].timestamp if p.events else 0.0 for p in profiles])
    trending = builder.trending_rows(moments)
    all_items = np.arange(builder.n)
    tensor = np.zeros((len(users), builder.n, len(FEATURES)), dtype=np.float32)
    seen = np.zeros((len(users), builder.n), dtype=bool)
    for row, profile in enumerate(profiles):
        query = queries[row] if profile.text else None
        tensor[row] = builder.features(profile, query, all_items, trending[row])
        seen[row, profile.positions] = True
    return tensor, seen


def fit_combiner(
    builder: FeatureBuilder,
    encoder: Any,
    train_events: Sequence[Event],
    validation: Mapping[str, Event],
    settings: RankerSettings,
) -> tuple[LinearCombiner, dict[str, float]]:
    """Pairwise logistic regression, then coordinate search on validation NDCG@k."""
    histories = group_by_user(train_events)
    users = [u for u in validation if u in histories and validation[u].item_id in builder.position]
    if not users:
        logger.warning("no validation users; using the default combiner weights")
        return LinearCombiner(), {}
    tensor, seen = user_feature_tensor(builder, encoder, histories, users)
    targets = np.array([builder.position[validation[u].item_id] for u in users])
    rng = np.random.default_rng(settings.seed)
    positives, negatives = [], []
    for row, target in enumerate(targets):
        if seen[row, target]:
            continue
        pool = np.flatnonzero(~seen[row])
        pool = pool[pool != target]
        if len(pool) == 0:
            continue
        hard = []
        for column in (0, 2, 3, 5):
            order = np.argsort(-tensor[row, pool, column])[: settings.negatives // 6]
            hard.extend(pool[order].tolist())
        uniform = rng.choice(pool, size=min(len(pool), settings.negatives // 3), replace=False)
        chosen = np.unique(np.concatenate([np.asarray(hard, dtype=np.int64), uniform]))
        positives.append(tensor[row, target])
        negatives.append(tensor[row, chosen])
    if not positives:
        return LinearCombiner(), {}
    combiner = LinearCombiner.fit_pairwise(np.stack(positives), negatives)
    metrics = _tune(combiner, tensor, seen, targets, settings)
    return combiner, metrics


def _tune(
    combiner: LinearCombiner,
    tensor: np.ndarray,
    seen: np.ndarray,
    targets: np.ndarray,
    settings: RankerSettings,
) -> dict[str, float]:
    """Coordinate search over non-negative weight multipliers, keeping the best NDCG@k."""
    _, mu, sd = combiner.vectors()
    standardized = (tensor - mu) / sd

    def evaluate(weights: np.ndarray) -> dict[str, float]:
        scores = standardized @ weights
        ranks = rank_of_targets(scores, seen, targets)
        return summarize(ranks, settings.k)

    # every feature is a "more is better" signal: a negative weight only fits noise
    weights = np.maximum(np.array([combiner.weights[f] for f in FEATURES]), 0.0)
    if not weights.any():
        weights = np.array([DEFAULT_WEIGHTS[f] for f in FEATURES])
    best = evaluate(weights)
    logger.info("combiner after logistic regression: validation %s", best)
    key = f"ndcg@{settings.k}"
    for _ in range(settings.tune_rounds):
        improved = False
        for index in range(len(FEATURES)):
            for factor in (0.0, 0.5, 0.8, 1.25, 2.0):
                trial = weights.copy()
                trial[index] = weights[index] * factor if weights[index] else factor * 0.1
                result = evaluate(trial)
                if result[key] > best[key] + 1e-5:
                    best, weights, improved = result, trial, True
        if not improved:
            break
    combiner.weights = dict(zip(FEATURES, map(float, weights), strict=True))
    best = {**best, "users": len(targets)}
    logger.info("combiner after tuning: validation %s, weights %s", best, combiner.weights)
    return best
