"""The evaluation contract: leave-last-out per user, model vs three baselines on one split.

For every user, the last interaction by time (repeat interactions with an item collapse to the
first; events with equal timestamps keep file order) is hidden; everything else trains. Each
method ranks all catalog items the user has not interacted with; the hidden item's rank gives
HR@k, NDCG@k and MRR (ties count half). Baselines: popularity (users per item), item-kNN (sum
of co-occurrence cosines with the user's items) and text similarity (cosine between the mean
base-encoder vector of the user's items and each item).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY, InteractionStats
from threefold.apps.recs.catalog import Catalog
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.ranker_training import RankerSettings, split_last, train_ranker
from threefold.apps.recs.ranking_features import FeatureBuilder, user_feature_tensor
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
from threefold.core.errors import DataError

logger = logging.getLogger(__name__)


def first_interactions(events: Sequence[Event]) -> list[Event]:
    """Each user's first event per item, in time order."""
    kept: list[Event] = []
    for history in group_by_user(events).values():
        seen: set[str] = set()
        for event in history:
            if event.item_id not in seen:
                seen.add(event.item_id)
                kept.append(event)
    return kept


def evaluate(
    catalog: Catalog,
    events: Sequence[Event],
    *,
    k: int = 10,
    settings: RankerSettings | None = None,
    base_model: str | None = None,
) -> dict[str, Any]:
    """Run the contract; returns the JSON-ready result."""
    from threefold.core.embedder import Embedder

    settings = settings or RankerSettings(k=k)
    items = list(catalog)
    position = {item.item_id: i for i, item in enumerate(items)}
    unknown = sorted({e.item_id for e in events if e.item_id not in position})
    if unknown:
        raise DataError(
            f"{len(unknown)} interaction item ids are not in the catalog, e.g. {unknown[:5]}; "
            "every interaction must name a catalog item"
        )
    distinct = first_interactions(events)
    train, test = split_last(distinct)
    histories = group_by_user(train)
    users = sorted(u for u in test if u in histories)
    if not users:
        raise DataError(
            "no user has two or more distinct items; leave-last-out needs a history per user"
        )
    targets = np.array([position[test[u].item_id] for u in users])
    seen = np.zeros((len(users), len(items)), dtype=bool)
    for row, user in enumerate(users):
        seen[row, [position[e.item_id] for e in histories[user]]] = True
    logger.info(
        "evaluating %d users on %d items (%d training events)", len(users), len(items), len(train)
    )

    ids = [item.item_id for item in items]
    window = settings.trending_window_days * DAY
    full_stats = InteractionStats(ids, train, neighbours=None, trending_window=window)
    baselines: dict[str, dict[str, float]] = {}
    popularity = np.tile(full_stats.popularity(), (len(users), 1))
    baselines["popularity"] = summarize(rank_of_targets(popularity, seen, targets), k)
    knn = np.stack(
        [full_stats.cooccurrence(np.flatnonzero(row), np.ones(row.sum())) for row in seen]
    )
    baselines["item_knn"] = summarize(rank_of_targets(knn, seen, targets), k)
    base = Embedder(base_model, max_length=settings.max_length).load()
    base_vectors = base.encode([item.text for item in items], show_progress=True)
    profiles = np.stack([base_vectors[seen[row]].mean(axis=0) for row in range(len(users))])
    baselines["text_similarity"] = summarize(
        rank_of_targets(profiles @ base_vectors.T, seen, targets), k
    )
    logger.info("baselines: %s", baselines)

    started = time.perf_counter()
    model = train_ranker(items, train, settings=settings, base_model=base_model)
    train_seconds = time.perf_counter() - started
    stats = InteractionStats(ids, train, neighbours=settings.neighbours, trending_window=window)
    vectors = model.encoder.encode([item.text for item in items], show_progress=True)
    builder = FeatureBuilder(items, vectors, stats)
    tensor, _ = user_feature_tensor(builder, model.encoder, histories, users)
    scores = model.combiner.score(tensor)
    result = summarize(rank_of_targets(scores, seen, targets), k)
    result["train_seconds"] = round(train_seconds, 2)
    # the same model with its two text features switched off: what the text adds
    without_text = LinearCombiner(
        weights={**model.combiner.weights, "text": 0.0, "profile": 0.0},
        mean=model.combiner.mean,
        scale=model.combiner.scale,
    )
    ablation = summarize(rank_of_targets(without_text.score(tensor), seen, targets), k)
    return {
        "users": len(users),
        "items": len(items),
        "interactions": len(distinct),
        "k": k,
        "model": result,
        "baselines": baselines,
        "ablation": {"model_without_text_features": ablation},
        "validation": model.info.get("validation", {}),
        "weights": {name: round(w, 4) for name, w in model.combiner.weights.items()},
    }
