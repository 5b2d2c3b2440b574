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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY, InteractionStats
from threefold.apps.recs.catalog import Catalog, Item
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.ranker_training import RankerSettings, split_last, train_ranker
from threefold.apps.recs.ranking_features import (
    FEATURES,
    SEQUENCE_COLUMN,
    FeatureBuilder,
    query_encoder_for,
    user_feature_tensor,
)
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize, user_blocks
from threefold.apps.recs.rules import new_item_slot
from threefold.core.errors import DataError

logger = logging.getLogger(__name__)

EVALUATION_BLOCK_VALUES = 1 << 26  # feature values held at once while evaluating (256 MiB)


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


@dataclass
class Split:
    """Leave-last-out: what trains, and per evaluated user the hidden item and the seen mask."""

    items: list[Item]
    position: dict[str, int]
    train: list[Event]
    histories: dict[str, list[Event]]
    users: list[str]
    targets: np.ndarray
    seen: np.ndarray

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


def leave_last_out(catalog: Catalog, events: Sequence[Event]) -> Split:
    """Hide each user's last new item; every method ranks the items the user has not seen."""
    items = list(catalog)
    position = {item.item_id: i for i, item in enumerate(items)}
    unknown = sorted({e.item_id for e in events if e.item_id not in position})
    if unknown:
        raise DataError(
            f"{len(unknown)} interaction item ids are not in the catalog, e.g. {unknown[:5]}; "
            "every interaction must name a catalog item"
        )
    train, test = split_last(first_interactions(events))
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
    return Split(items, position, train, histories, users, targets, seen)


def gate_split(catalog: Catalog, context: Sequence[Event], gate: Sequence[Event]) -> Split:
    """Leave-last-out over a held-out gate set: each gate user's last new gate item is hidden.

    The user's history is their `context` events (the training events) plus their earlier
    gate events; only users whose hidden item comes from `gate` count, so no target was
    trained on. Interaction statistics see `context` and the visible gate events.
    """
    items = list(catalog)
    position = {item.item_id: i for i, item in enumerate(items)}
    unknown = sorted({e.item_id for e in gate if e.item_id not in position})
    if unknown:
        raise DataError(
            f"{len(unknown)} gate event item ids are not in the catalog, e.g. {unknown[:5]}; "
            "the gate set must name catalog items (rebuild it for this catalog)"
        )
    gate_users = {e.user_id for e in gate}
    held_out = set(gate)
    visible, hidden = split_last(
        first_interactions([e for e in context if e.user_id in gate_users] + list(gate))
    )
    users = sorted(u for u, event in hidden.items() if event in held_out)
    histories = group_by_user(visible)
    users = [u for u in users if u in histories]
    if not users:
        raise DataError(
            "the gate set has no user with two or more distinct items; it needs a history and a "
            "held-out next item per user (e.g. python -m threefold.apps.recs.sample_data "
            "--user-prefix g --seed 11 --out gate.csv)"
        )
    targets = np.array([position[hidden[u].item_id] for u in users])
    seen = np.zeros((len(users), len(items)), dtype=bool)
    for row, user in enumerate(users):
        seen[row, [position[e.item_id] for e in histories[user]]] = True
    gate_visible = [e for e in visible if e in held_out]
    return Split(items, position, [*context, *gate_visible], histories, users, targets, seen)


def split_builder(model: RankerModel, split: Split) -> FeatureBuilder:
    """The model's feature builder over `split`: item vectors and the training statistics."""
    stats = InteractionStats(
        split.item_ids,
        split.train,
        neighbours=model.neighbours,
        trending_window=model.trending_window,
    )
    vectors = model.encoder.encode([item.text for item in split.items], show_progress=False)
    return FeatureBuilder(split.items, vectors, stats)


def feature_tensor(
    model: RankerModel,
    split: Split,
    query_encoder: Any = None,
    builder: FeatureBuilder | None = None,
    rows: slice = slice(None),
) -> np.ndarray:
    """The model's features of every catalog item for the evaluated users of `split` (`rows`:
    a block of them; default all).

    `query_encoder` embeds the users' history texts (default: the model's encoder); pass the
    `builder` of an earlier call on the same split to skip embedding the catalog again.
    """
    builder = builder or split_builder(model, split)
    tensor, _ = user_feature_tensor(
        builder,
        query_encoder or model.encoder,
        split.histories,
        split.users[rows],
        model.sequence,
    )
    return tensor


def evaluation_blocks(split: Split) -> list[slice]:
    """Blocks of the split's users whose features fit EVALUATION_BLOCK_VALUES."""
    return user_blocks(len(split.users), len(split.items) * len(FEATURES), EVALUATION_BLOCK_VALUES)


def block_ranks(split: Split, rows: slice, scores: np.ndarray) -> np.ndarray:
    """Ranks of the targets of the users in `rows`, given their (users, items) `scores`."""
    return rank_of_targets(scores, split.seen[rows], split.targets[rows])


def score_model(model: RankerModel, split: Split, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of the model's ranking of each user's hidden item."""
    builder = split_builder(model, split)
    ranks = [
        block_ranks(
            split, rows, model.combiner.score(feature_tensor(model, split, None, builder, rows))
        )
        for rows in evaluation_blocks(split)
    ]
    return summarize(np.concatenate(ranks), k)


def evaluate(
    catalog: Catalog,
    events: Sequence[Event],
    *,
    k: int = 10,
    settings: RankerSettings | None = None,
    base_model: str | None = None,
) -> dict[str, Any]:
    """Run the contract; returns the JSON-ready result.

    Users are scored a block at a time (`evaluation_blocks`): a large catalog's (users, items,
    features) tensor never exists whole.
    """
    from threefold.core.embedder import Embedder

    settings = settings or RankerSettings(k=k)
    split = leave_last_out(catalog, events)
    items, users, seen = split.items, split.users, split.seen
    logger.info(
        "evaluating %d users on %d items (%d training events)",
        len(users),
        len(items),
        len(split.train),
    )
    blocks = evaluation_blocks(split)
    ids = split.item_ids
    window = settings.trending_window_days * DAY
    full_stats = InteractionStats(ids, split.train, neighbours=None, trending_window=window)
    base = Embedder(base_model, max_length=settings.max_length).load()
    base_vectors = base.encode([item.text for item in items], show_progress=True)
    popularity = full_stats.popularity()
    baseline_ranks: dict[str, list[np.ndarray]] = defaultdict(list)
    for rows in blocks:
        block_seen = seen[rows]
        scores = {
            "popularity": np.tile(popularity, (len(block_seen), 1)),
            "item_knn": np.stack(
                [
                    full_stats.cooccurrence(np.flatnonzero(row), np.ones(row.sum()))
                    for row in block_seen
                ]
            ),
            "text_similarity": np.stack([base_vectors[row].mean(axis=0) for row in block_seen])
            @ base_vectors.T,
        }
        for name, values in scores.items():
            baseline_ranks[name].append(block_ranks(split, rows, values))
    baselines = {name: summarize(np.concatenate(r), k) for name, r in baseline_ranks.items()}
    logger.info("baselines: %s", baselines)

    started = time.perf_counter()
    model = train_ranker(items, split.train, settings=settings, base_model=base_model)
    train_seconds = time.perf_counter() - started
    builder = split_builder(model, split)
    queries = query_encoder_for(model.encoder, quantize=True)
    new = full_stats.counts == 0
    # the same model with features switched off (weights kept): what each part adds
    without_text = _switched_off(model.combiner, "text", "profile")
    without_sequence = _switched_off(model.combiner, "sequence")
    ranks: dict[str, list[np.ndarray]] = defaultdict(list)
    for rows in blocks:
        tensor = feature_tensor(model, split, builder=builder, rows=rows)
        scores = model.combiner.score(tensor)
        variants = {
            "model": scores,
            "model_without_text_features": without_text.score(tensor),
            "model_without_sequence": without_sequence.score(tensor),
        }
        if queries is not model.encoder:  # what the API serves from QUANTIZE_QUERIES_FROM items
            int8 = feature_tensor(model, split, query_encoder=queries, builder=builder, rows=rows)
            variants["model_with_int8_queries"] = model.combiner.score(int8)
        if model.sequence is not None:
            # the opt-in new-item slot (new_item_slot): the best item nobody has touched yet
            variants["model_with_new_item_slot"] = new_item_slot(
                np.where(seen[rows], -np.inf, scores), new, tensor[:, :, SEQUENCE_COLUMN], k
            )
            variants["sequence_ranker_alone"] = tensor[:, :, SEQUENCE_COLUMN]
        for name, values in variants.items():
            ranks[name].append(block_ranks(split, rows, values))
    measured = {name: summarize(np.concatenate(r), k) for name, r in ranks.items()}
    result = {**measured.pop("model"), "train_seconds": round(train_seconds, 2)}
    if "model_with_new_item_slot" in measured:
        measured["model_with_new_item_slot"]["new_items"] = int(new.sum())
    return {
        "users": len(users),
        "items": len(items),
        "interactions": len(split.train) + len(users),
        "k": k,
        "model": result,
        "baselines": baselines,
        "ablation": measured,
        "validation": model.info.get("validation", {}),
        "sequence": model.info.get("sequence", {}),
        "weights": {name: round(w, 4) for name, w in model.combiner.weights.items()},
    }


def _switched_off(combiner: LinearCombiner, *features: str) -> LinearCombiner:
    return LinearCombiner(
        weights={**combiner.weights, **dict.fromkeys(features, 0.0)},
        mean=combiner.mean,
        scale=combiner.scale,
    )
