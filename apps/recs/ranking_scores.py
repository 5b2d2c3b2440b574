"""Ranking metrics for one relevant item per query: HR@k, NDCG@k, MRR."""

from __future__ import annotations

import numpy as np


def rank_of_targets(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among its unseen items; ties count half."""
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
