"""Training the ranker: fine-tune the text encoder, then fit and tune the combiner.

The text part is a bi-encoder fine-tuned from the core MiniLM body on (user history text,
next item text) pairs with in-batch negatives (core `Embedder.fine_tune`). The sequence ranker
(`sequence_training`; by default the text-aware ranker and ID-only SASRec as one ensemble, see
`sequence_ensemble`) then learns next-item prediction over the fine-tuned item vectors. The
combiner is a linear scorer over standardized features, fit by pairwise logistic regression
(held-out item vs sampled negatives) on a validation split (each user's last training
interaction), then tuned by coordinate search on that split's NDCG@k. The test interaction is
never used.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY, InteractionStats
from threefold.apps.recs.catalog import Item
from threefold.apps.recs.combiner import DEFAULT_WEIGHTS, LinearCombiner
from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.item_vectors import ItemVectors
from threefold.apps.recs.profiles import HISTORY_TEXT_ITEMS, history_text
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.ranking_features import (
    FEATURES,
    SEQUENCE_COLUMN,
    FeatureBuilder,
    user_feature_tensor,
)
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize, user_blocks
from threefold.apps.recs.sequence_model import SequenceConfig
from threefold.apps.recs.sequence_training import (
    SequenceSettings,
    refit_sequence_model,
    train_sequence_ensemble,
    train_sequence_model,
)
from threefold.core.errors import ConfigError
from threefold.core.worker_processes import check_process_count

logger = logging.getLogger(__name__)

COMBINER_TENSOR_BYTES = 1 << 30  # the combiner's validation features stay within this
MIN_VALIDATION_USERS = 50
TUNE_CHUNK_VALUES = 1 << 24  # feature values scored at once while tuning


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
    sequence: bool = True
    sequence_text: bool = True
    sequence_ensemble: bool = True
    sequence_seconds: float = 480.0
    sequence_processes: int | None = None

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
        check_process_count("RankerSettings.sequence_processes", self.sequence_processes)
        if self.sequence_seconds <= 0:
            raise ConfigError(
                f"RankerSettings.sequence_seconds must be > 0, found {self.sequence_seconds!r}"
            )
        if self.learning_rate <= 0 or self.trending_window_days <= 0 or self.tune_rounds < 0:
            raise ConfigError(
                "learning_rate and trending_window_days must be > 0 and tune_rounds >= 0; found "
                f"{self.learning_rate!r}, {self.trending_window_days!r}, {self.tune_rounds!r}"
            )


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
    sequence_model: Any = None,
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
    return fit_combiner(builder, encoder, train_events, validation, settings, sequence_model)


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
    sequence = None
    sequence_settings = SequenceSettings(
        k=settings.k,
        seed=settings.seed,
        max_seconds=settings.sequence_seconds,
        processes=settings.sequence_processes,
    )
    item_ids = [item.item_id for item in items]
    if settings.sequence and settings.sequence_text and settings.sequence_ensemble:
        # trained on the same split as the combiner: each user's last new item is validation;
        # refit after the combiner: it must not see its validation items learned
        sequence = train_sequence_ensemble(
            item_ids,
            vectors,
            train_events,
            settings=sequence_settings,
            refit=False,
        )
    elif settings.sequence:
        sequence = train_sequence_model(
            item_ids,
            vectors,
            train_events,
            config=SequenceConfig(
                text_dimension=int(vectors.shape[1]), use_text=settings.sequence_text
            ),
            settings=sequence_settings,
            refit=False,
        )
    combiner, val_metrics = tune_combiner(items, vectors, events, encoder, settings, sequence)
    if sequence is not None:
        refit_sequence_model(sequence, item_ids, vectors, events, sequence_settings)
        info["sequence"] = sequence.info
    info["validation"] = val_metrics
    info["train_seconds"] = round(time.perf_counter() - started, 2)
    logger.info("ranker trained in %.1fs; validation %s", info["train_seconds"], val_metrics)
    return RankerModel(
        encoder=encoder,
        combiner=combiner,
        info=info,
        sequence=sequence,
        item_vectors=ItemVectors.of(encoder.weights_id, items, vectors),
    )


def fit_combiner(
    builder: FeatureBuilder,
    encoder: Any,
    train_events: Sequence[Event],
    validation: Mapping[str, Event],
    settings: RankerSettings,
    sequence_model: Any = None,
) -> tuple[LinearCombiner, dict[str, float]]:
    """Pairwise logistic regression, then coordinate search on validation NDCG@k."""
    histories = group_by_user(train_events)
    users = [u for u in validation if u in histories and validation[u].item_id in builder.position]
    if not users:
        logger.warning("no validation users; using the default combiner weights")
        return LinearCombiner(), {}
    users = validation_sample(users, builder.n, settings.seed)
    tensor, seen = user_feature_tensor(builder, encoder, histories, users, sequence_model)
    targets = np.array([builder.position[validation[u].item_id] for u in users])
    hard_columns = (0, 2, 3, 5) + ((SEQUENCE_COLUMN,) if sequence_model is not None else ())
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
        for column in hard_columns:
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


def validation_sample(users: Sequence[str], n_items: int, seed: int) -> list[str]:
    """The validation users the combiner is fitted on: all of them while their (users, items,
    features) tensor fits COMBINER_TENSOR_BYTES, else a seeded sample that does (at least
    MIN_VALIDATION_USERS), so a large catalog trains in bounded memory instead of failing."""
    per_user = n_items * (len(FEATURES) * 4 + 9)  # features, seen mask, sequence and trending
    cap = max(MIN_VALIDATION_USERS, COMBINER_TENSOR_BYTES // max(per_user, 1))
    if len(users) <= cap:
        return list(users)
    chosen = np.sort(np.random.default_rng(seed).choice(len(users), size=cap, replace=False))
    logger.warning(
        "fitting the combiner on %d of %d validation users: %d items x %d users would take "
        "more than %.1f GiB of features",
        cap,
        len(users),
        n_items,
        len(users),
        COMBINER_TENSOR_BYTES / 2**30,
    )
    return [users[i] for i in chosen]


def _tune(
    combiner: LinearCombiner,
    tensor: np.ndarray,
    seen: np.ndarray,
    targets: np.ndarray,
    settings: RankerSettings,
) -> dict[str, float]:
    """Coordinate search over non-negative weight multipliers, keeping the best NDCG@k.

    Standardizes `tensor` in place (its caller is done with it): no second copy of it.
    """
    _, mu, sd = combiner.vectors()
    tensor -= mu
    tensor /= sd
    blocks = user_blocks(len(tensor), tensor.shape[1] * tensor.shape[2], TUNE_CHUNK_VALUES)

    def evaluate(weights: np.ndarray) -> dict[str, float]:
        # a block of users at a time: the float64 product never copies the whole tensor
        scores = np.empty(tensor.shape[:2], dtype=np.float64)
        for block in blocks:
            scores[block] = tensor[block] @ weights
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
