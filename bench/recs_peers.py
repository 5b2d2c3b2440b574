"""Peer recommenders for the MovieLens benchmark, scored on the evaluation's own split.

Each peer takes the leave-last-out `Split` and returns a (users, items) score matrix; the
benchmark ranks it with the same `rank_of_targets` as threefold. Hyper-parameters are tuned on
the validation item (each user's last training item), never on the test item.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np

from threefold.apps.recs.evaluation import Split
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
from threefold.apps.recs.sequence_training import ordered_positions

logger = logging.getLogger(__name__)


def user_item_matrix(sequences: Sequence[Sequence[int]], n: int) -> np.ndarray:
    matrix = np.zeros((len(sequences), n), dtype=np.float32)
    for row, positions in enumerate(sequences):
        matrix[row, list(positions)] = 1.0
    return matrix


class Validation:
    """Each user's last training item held out again: the tuning split of every peer."""

    def __init__(self, split: Split, k: int) -> None:
        ordered = ordered_positions(split.train, split.position)
        self.n = len(split.items)
        self.k = k
        self.users = [u for u in split.users if len(ordered[u]) >= 2]
        self.inputs = [ordered[u][:-1] for u in self.users]
        self.targets = np.array([ordered[u][-1] for u in self.users])
        self.matrix = user_item_matrix(self.inputs, self.n)
        self.full = [ordered[u] for u in split.users]
        self.full_matrix = user_item_matrix(self.full, self.n)

    def ndcg(self, scores: np.ndarray) -> float:
        ranks = rank_of_targets(scores, self.matrix > 0, self.targets)
        return summarize(ranks, self.k)[f"ndcg@{self.k}"]


def tune(
    validation: Validation, grid: Sequence[float], fit: Callable[[np.ndarray, float], Callable]
) -> tuple[float, dict[float, float]]:
    """The grid value with the best validation NDCG; `fit(matrix, value)` returns a scorer."""
    results = {}
    for value in grid:
        scorer = fit(validation.matrix, value)
        results[value] = validation.ndcg(scorer(validation.matrix, validation.inputs))
        logger.info("tuning %s=%s: validation ndcg %.4f", fit.__name__, value, results[value])
    best = max(results, key=results.get)
    return best, results


def fit_ease(matrix: np.ndarray, l2: float) -> Callable:
    """EASE (Steck 2019): closed-form item-item weights, zero diagonal."""
    gram = (matrix.T @ matrix).astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    weights = weights.astype(np.float32)
    return lambda users, _sequences: users @ weights


def fit_markov(matrix: np.ndarray, smoothing: float, *, sequences: Sequence[Sequence[int]] = ()):
    """First-order Markov chain: transition counts from the last item (popularity backs off)."""
    n = matrix.shape[1]
    transitions = np.zeros((n, n), dtype=np.float32)
    for sequence in sequences:
        for a, b in itertools.pairwise(sequence):
            transitions[a, b] += 1.0
    popularity = matrix.sum(axis=0)
    popularity = popularity / max(popularity.sum(), 1.0)

    def score(_users: np.ndarray, histories: Sequence[Sequence[int]]) -> np.ndarray:
        last = np.array([h[-1] for h in histories])
        return transitions[last] + smoothing * popularity[None, :]

    return score


def fit_implicit(matrix: np.ndarray, factors: int, *, kind: str, seed: int = 13) -> Callable:
    """Implicit ALS or BPR (PyPI `implicit`, the bench extra)."""
    try:
        import implicit
        from scipy.sparse import csr_matrix
    except ImportError as exc:  # pragma: no cover - bench extra
        raise SystemExit("the ALS/BPR peers need `implicit`: pip install -e '.[bench]'") from exc
    users = csr_matrix(matrix)
    if kind == "als":
        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=int(factors), regularization=0.05, iterations=20, random_state=seed
        )
    else:
        model = implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=int(factors), iterations=200, random_state=seed
        )
    model.fit(users, show_progress=False)
    user_factors, item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda _users, _sequences: user_factors @ item_factors.T
