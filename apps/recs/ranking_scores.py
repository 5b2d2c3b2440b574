"""Ranking metrics for one relevant item per query: HR@k, NDCG@k, MRR."""

from __future__ import annotations

import numpy as np

from threefold.core.errors import ModelError


def check_finite_scores(scores: np.ndarray, seen: np.ndarray) -> None:
    """Raise when a model gave NaN or infinite scores to items it must rank (the unseen ones).

    A NaN target would otherwise compare false against everything and come out as rank 1,
    so a broken model would look perfect.
    """
    bad = ~np.isfinite(scores) & ~seen
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ModelError(
            f"the model gave {int(bad.sum())} non-finite scores (NaN or inf) to unseen items in "
            f"{len(rows)} of {len(scores)} users (first row {int(rows[0])}); expected a finite "
            "score for every item it ranks. Fix the model (diverged training, division by zero "
            "or a missing vector) before evaluating it."
        )


def rank_of_targets(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among its unseen items; ties count half.

    Raises `ModelError` when an unseen item's score is not finite.
    """
    check_finite_scores(scores, seen)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    masked = np.where(seen, -np.inf, scores)
    greater = (masked > target_scores[:, None]).sum(axis=1)
    ties = (masked == target_scores[:, None]).sum(axis=1) - 1
    return 1.0 + greater + 0.5 * np.maximum(ties, 0)


def summarize(ranks: np.ndarray, k: int) -> dict[str, float]:
    """HR@k, NDCG@k (one relevant item) and MRR from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        return {f"hr@{k}": 0.0, f"ndcg@{k}": 0.0, "mrr": 0.0}
    hit = ranks <= k
    return {
        f"hr@{k}": round(float(hit.mean()), 4),
        f"ndcg@{k}": round(float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()), 4),
        "mrr": round(float((1.0 / ranks).mean()), 4),
    }


def user_blocks(users: int, values_per_user: int, budget: int, multiple: int = 1) -> list[slice]:
    """Consecutive blocks of users whose (block, values_per_user) arrays hold at most `budget`
    values (at least `multiple` users, and a multiple of it), so scoring every user against a
    large catalog never holds all users' scores at once."""
    per_block = budget // max(values_per_user, 1)
    rows = max(multiple, per_block - per_block % multiple)
    return [slice(start, min(start + rows, users)) for start in range(0, users, rows)]
