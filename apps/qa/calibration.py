"""Turn retrieval scores (top cosine, margin to the runner-up) into a calibrated answer probability.

The probability is P(the top candidate is the right FAQ and the question is in scope), fitted at
build time on held-out paraphrases (positives) and out-of-scope probes (negatives). The answer
threshold is the probability cut that maximizes accuracy on that held-out set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from threefold.core.errors import ConfigError, ModelError

METHODS = ("logistic", "isotonic")
# Used when the KB has too few paraphrases to hold any out (e.g. one question per id): the curve
# fitted on the shipped store FAQ (data/store_faq.csv) with all-MiniLM-L6-v2, rounded. It crosses
# 0.5 at cosine 0.63 when the runner-up is 0.1 behind. Override the threshold for other embedders.
DEFAULT_COEF = (-8.0, 11.0, 10.5)
DEFAULT_THRESHOLD = 0.5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def features(top_score: float | np.ndarray, margin: float | np.ndarray) -> np.ndarray:
    """Design matrix [1, top cosine, margin to the second candidate]."""
    top = np.atleast_1d(np.asarray(top_score, dtype=np.float64))
    gap = np.atleast_1d(np.asarray(margin, dtype=np.float64))
    return np.stack([np.ones_like(top), top, gap], axis=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, l2: float = 1e-3) -> np.ndarray:
    """Weighted logistic regression by Newton's method (IRLS) with a small ridge on the slopes."""
    coef = np.zeros(x.shape[1])
    ridge = np.full(x.shape[1], l2)
    ridge[0] = 0.0
    for _ in range(100):
        p = _sigmoid(x @ coef)
        grad = x.T @ (w * (p - y)) + ridge * coef
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(ridge) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return coef


def fit_isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increasing step function by pool-adjacent-violators; returns (knots x, values y)."""
    order = np.argsort(x, kind="stable")
    xs, ys, ws = x[order], y[order].astype(np.float64), w[order].astype(np.float64)
    blocks: list[list[float]] = []  # [value, weight, x_first, x_last]
    for xi, yi, wi in zip(xs, ys, ws, strict=True):
        blocks.append([yi, wi, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, w2, _, l2 = blocks.pop()
            v1, w1, f1, _ = blocks.pop()
            total = w1 + w2
            blocks.append([(v1 * w1 + v2 * w2) / total, total, f1, l2])
    knots_x = np.array([(b[2] + b[3]) / 2 for b in blocks])
    knots_y = np.array([b[0] for b in blocks])
    return knots_x, knots_y


def best_threshold(
    probs: np.ndarray, top_correct: np.ndarray, in_scope: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """Probability cut maximizing weighted accuracy; returns (threshold, accuracy).

    An in-scope query counts as correct when answered (p >= t) with the right id; an out-of-scope
    one when not answered. Among equally good cuts the middle of the best plateau is taken.
    """
    gain_answer = np.where(in_scope & top_correct, weights, 0.0)
    gain_abstain = np.where(~in_scope, weights, 0.0)
    order = np.argsort(probs)
    p_sorted = probs[order]
    # threshold just above p_sorted[i-1] -> items [0, i) abstain, [i, n) answer
    abstain_prefix = np.concatenate([[0.0], np.cumsum(gain_abstain[order])])
    answer_suffix = np.concatenate([np.cumsum(gain_answer[order][::-1])[::-1], [0.0]])
    totals = abstain_prefix + answer_suffix
    candidates = np.concatenate([[0.0], (p_sorted[:-1] + p_sorted[1:]) / 2, [1.0]])
    valid = np.concatenate([[True], p_sorted[1:] > p_sorted[:-1], [True]])
    totals = np.where(valid, totals, -np.inf)
    best = totals.max()
    best_idx = np.flatnonzero(totals >= best - 1e-12)
    threshold = float(candidates[best_idx[len(best_idx) // 2]])
    return threshold, float(best / weights.sum())


@dataclass
class Calibrator:
    """Maps (top cosine, margin) to a probability; carries the answer threshold chosen with it."""

    method: str = "logistic"
    coef: tuple[float, float, float] = DEFAULT_COEF
    iso_x: list[float] = field(default_factory=list)
    iso_y: list[float] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    source: str = "default"
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"calibration method {self.method!r} is not supported; expected one of {METHODS}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], found {self.threshold}")
        if self.method == "isotonic" and len(self.iso_x) != len(self.iso_y):
            raise ModelError("isotonic calibration has knots and values of different lengths")

    def probabilities(self, top_score: np.ndarray, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for arrays of (top cosine, margin)."""
        z = features(top_score, margin) @ np.asarray(self.coef)
        if self.method == "isotonic" and self.iso_x:
            return np.interp(z, self.iso_x, self.iso_y)
        return _sigmoid(z)

    def confidence(self, top_score: float, margin: float) -> float:
        """Calibrated probability for one query."""
        value = float(self.probabilities(np.array([top_score]), np.array([margin]))[0])
        return 0.0 if math.isnan(value) else value

    def with_threshold(self, threshold: float) -> Calibrator:
        """The same curve with an overridden answer threshold."""
        return Calibrator(
            method=self.method,
            coef=self.coef,
            iso_x=self.iso_x,
            iso_y=self.iso_y,
            threshold=threshold,
            source=self.source,
            stats={**self.stats, "threshold_overridden": True},
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["coef"] = list(self.coef)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            method=data.get("method", "logistic"),
            coef=tuple(float(c) for c in data.get("coef", DEFAULT_COEF)),  # type: ignore[arg-type]
            iso_x=[float(v) for v in data.get("iso_x", [])],
            iso_y=[float(v) for v in data.get("iso_y", [])],
            threshold=float(data.get("threshold", DEFAULT_THRESHOLD)),
            source=data.get("source", "default"),
            stats=dict(data.get("stats", {})),
        )


def fit_calibrator(
    top_score: Sequence[float],
    margin: Sequence[float],
    top_correct: Sequence[bool],
    in_scope: Sequence[bool],
    *,
    method: str = "logistic",
    oos_weight: float = 1.0,
    min_positives: int = 10,
) -> Calibrator:
    """Fit the probability curve and threshold on held-out queries.

    Args:
        top_correct: whether the top candidate was the query's own FAQ (False for out of scope).
        in_scope: True for held-out paraphrases, False for out-of-scope probes.
        oos_weight: total weight of the out-of-scope probes relative to the in-scope ones (1.0 =
            both groups count equally, whatever their sizes).
        min_positives: below this many held-out paraphrases the default curve is used.
    """
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is not supported; expected {METHODS}")
    if oos_weight < 0:
        raise ConfigError(f"oos_weight must be >= 0, found {oos_weight}")
    top = np.asarray(top_score, dtype=np.float64)
    gap = np.asarray(margin, dtype=np.float64)
    correct = np.asarray(top_correct, dtype=bool)
    scope = np.asarray(in_scope, dtype=bool)
    n_pos, n_neg = int(scope.sum()), int((~scope).sum())
    counts = {"n_in_scope": n_pos, "n_out_of_scope": n_neg}
    if n_pos < min_positives or n_neg == 0:
        return Calibrator(
            method="logistic",
            source="default",
            stats={**counts, "reason": f"fewer than {min_positives} held-out paraphrases"},
        )
    weights = np.where(scope, 1.0 / n_pos, oos_weight / n_neg)
    weights = weights / weights.mean()
    labels = (scope & correct).astype(np.float64)
    x = features(top, gap)
    coef = fit_logistic(x, labels, weights)
    iso_x: list[float] = []
    iso_y: list[float] = []
    if method == "isotonic":
        kx, ky = fit_isotonic(x @ coef, labels, weights)
        iso_x, iso_y = kx.tolist(), ky.tolist()
    calibrator = Calibrator(
        method=method, coef=tuple(coef.tolist()), iso_x=iso_x, iso_y=iso_y, source="held-out"
    )
    probs = calibrator.probabilities(top, gap)
    threshold, accuracy = best_threshold(probs, correct, scope, weights)
    brier = float(np.average((probs - labels) ** 2, weights=weights))
    calibrator.threshold = threshold
    calibrator.stats = {
        **counts,
        "top1_accuracy_in_scope": round(float(correct[scope].mean()), 4),
        "weighted_accuracy_at_threshold": round(accuracy, 4),
        "brier": round(brier, 4),
    }
    return calibrator
