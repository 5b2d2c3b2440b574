"""The ranker's combiner: a linear scorer over standardized ranking features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from threefold.apps.recs.ranking_features import FEATURES
from threefold.core.errors import ModelError

DEFAULT_WEIGHTS = {
    "text": 1.0,
    "profile": 1.0,
    "cooccurrence": 1.0,
    "recent_cooccurrence": 1.0,
    "popularity": 0.3,
    "trending": 0.3,
    "category": 0.5,
    "sequence": 1.0,
}


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
