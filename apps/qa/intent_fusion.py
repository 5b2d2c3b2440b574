"""Fuse the intent classifier with retrieval, and calibrate the fused confidence (pure numpy).

Per FAQ f known to the classifier: fused(f) = alpha * P(f | message) + (1 - alpha) * cosine(f),
where cosine(f) is the best cosine of the message to f's indexed texts (questions, answer). An
FAQ the classifier has not seen (added through the admin API since the last build) scores by
its cosine alone, so retrieval serves it at once.

The confidence that the top fused FAQ is the right answer is a logistic curve over five signals
(`FEATURES`): the fused top score and its margin to the runner-up, the classifier's max
probability, its energy (log-sum-exp of the logits) and the top retrieval cosine. `alpha`, the
curve and the answer threshold are all chosen at build time from the KB itself (see builder).

The operating point: the threshold maximizes accuracy on the build-time held-out set with the
out-of-scope queries weighted to an explicit prior share of the traffic, `oos_prior` (default
0.2: one message in five is something the KB cannot answer; a higher prior declines more), and
is then capped so that out-of-scope detection keeps in-scope accuracy: of the held-out
paraphrases the bot ranks right, at most `max_declined` (default 0.01, one in a hundred) may be
declined. The cap needs at least 1 / `max_declined` such paraphrases to be measured; a smaller
KB keeps the prior's threshold. Why the cap: the build-time negatives (masked-FAQ near-misses
especially) are harder than real out-of-scope traffic and the held-out paraphrases easier than
real questions, so the prior's optimum alone declines too many answerable questions (CLINC150:
in-scope 0.92-0.93 at out-of-scope recall 0.95; apps/qa/README.md, "Quality").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from threefold.apps.qa.calibration import best_threshold, fit_logistic
from threefold.core.errors import ConfigError

FEATURES = ("fused_top", "fused_margin", "intent_max_prob", "intent_energy", "retrieval_top")
ALPHAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
DEFAULT_OOS_PRIOR = 0.2
DEFAULT_MAX_DECLINED = 0.01


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax that treats -inf logits (masked FAQs) as probability 0."""
    top = np.max(logits, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.exp(logits - top)
    return exp / np.maximum(exp.sum(axis=-1, keepdims=True), 1e-30)


def energy(logits: np.ndarray) -> np.ndarray:
    """log-sum-exp of each row (the negative free energy: high for familiar messages)."""
    top = np.max(logits, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return (top + np.log(np.maximum(np.exp(logits - top).sum(axis=-1, keepdims=True), 1e-30)))[:, 0]


def fused_scores(
    probs: np.ndarray, cosines: np.ndarray, known: np.ndarray, alpha: float
) -> np.ndarray:
    """(n, n_faqs) fused scores; FAQs unknown to the classifier keep their cosine.

    A masked FAQ (cosine -inf) stays at -inf.
    """
    finite = np.isfinite(cosines)
    mixed = alpha * probs + (1.0 - alpha) * np.where(finite, cosines, 0.0)
    return np.where(finite, np.where(known[None, :], mixed, cosines), -np.inf)


def signals(
    logits: np.ndarray, cosines: np.ndarray, known: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused scores, best FAQ column, feature rows in `FEATURES` order) for a batch.

    `logits` and `cosines` are (n, n_faqs) in the same FAQ order; -inf marks a masked FAQ.
    """
    probs = softmax(logits)
    fused = fused_scores(probs, cosines, known, alpha)
    rows = np.arange(fused.shape[0])
    best = np.argmax(fused, axis=1)
    top = fused[rows, best]
    rest = fused.copy()
    rest[rows, best] = -np.inf
    second = rest.max(axis=1) if fused.shape[1] > 1 else np.full_like(top, -np.inf)
    margin = np.where(np.isfinite(second), top - second, np.maximum(top, 0.0))
    finite_cos = np.where(np.isfinite(cosines), cosines, -1.0)
    features = np.stack(
        [top, margin, probs.max(axis=1), energy(logits), finite_cos.max(axis=1)], axis=1
    )
    return fused, best, features


def _design(features: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((features.shape[0], 1)), features])


@dataclass
class IntentFusion:
    """Fusion weight, confidence curve over `FEATURES` and the answer threshold of a build."""

    alpha: float
    coef: tuple[float, ...]
    threshold: float
    oos_prior: float = DEFAULT_OOS_PRIOR
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"fusion alpha must be within [0, 1], found {self.alpha}")
        if len(self.coef) != len(FEATURES) + 1:
            raise ConfigError(
                f"fusion has {len(self.coef)} coefficients; expected {len(FEATURES) + 1}"
            )

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(top fused FAQ is right and the message in scope) per feature row."""
        z = _design(np.atleast_2d(features)) @ np.asarray(self.coef)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))

    def with_threshold(self, threshold: float) -> IntentFusion:
        return IntentFusion(
            self.alpha,
            self.coef,
            threshold,
            self.oos_prior,
            {**self.stats, "threshold_overridden": True},
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["coef"] = list(self.coef)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntentFusion:
        return cls(
            alpha=float(data["alpha"]),
            coef=tuple(float(c) for c in data["coef"]),
            threshold=float(data["threshold"]),
            oos_prior=float(data.get("oos_prior", DEFAULT_OOS_PRIOR)),
            stats=dict(data.get("stats", {})),
        )


@dataclass
class HeldOut:
    """Build-time scores of held-out messages: (n, n_faqs) logits and cosines, KB FAQ order.

    `own` is each in-scope message's FAQ column; near-misses are the in-scope messages with
    their own FAQ masked (-inf), derived here; `probe_*` are out-of-scope probes.
    """

    logits: np.ndarray
    cosines: np.ndarray
    own: np.ndarray
    probe_logits: np.ndarray
    probe_cosines: np.ndarray


def _masked(values: np.ndarray, own: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[np.arange(len(own)), own] = -np.inf
    return out


def fit_fusion(
    held: HeldOut,
    known: np.ndarray,
    *,
    oos_prior: float = DEFAULT_OOS_PRIOR,
    max_declined: float = DEFAULT_MAX_DECLINED,
    alphas: Sequence[float] = ALPHAS,
) -> IntentFusion:
    """Choose alpha (best held-out top-1), fit the confidence curve, pick the threshold.

    Negatives: near-misses (held-out messages with their FAQ masked) and probes share the
    out-of-scope weight half and half (all of it when there are no probes). The curve is fitted
    with in-scope and out-of-scope weighing the same; the threshold with weight `oos_prior`,
    capped by `max_declined` (see the module docstring; 1.0 turns the cap off).
    """
    if not 0.0 < oos_prior < 1.0:
        raise ConfigError(f"oos_prior must be within (0, 1), found {oos_prior}")
    if not 0.0 < max_declined <= 1.0:
        raise ConfigError(f"max_declined must be within (0, 1], found {max_declined}")
    if len(held.own) == 0:
        raise ConfigError("fusion needs held-out paraphrases; the KB has none")
    accuracy = {}
    for alpha in alphas:
        _, best, _ = signals(held.logits, held.cosines, known, alpha)
        accuracy[alpha] = float(np.mean(best == held.own))
    alpha = max(alphas, key=lambda a: (accuracy[a], a))
    _, best, pos = signals(held.logits, held.cosines, known, alpha)
    _, _, near = signals(
        _masked(held.logits, held.own), _masked(held.cosines, held.own), known, alpha
    )
    groups = [pos, near]
    shares = [1.0, 1.0]
    if len(held.probe_logits):
        _, _, probes = signals(held.probe_logits, held.probe_cosines, known, alpha)
        groups.append(probes)
        shares = [1.0, 0.5, 0.5]
    features = np.vstack(groups)
    sizes = [len(g) for g in groups]
    in_scope = np.concatenate([np.ones(sizes[0], bool), np.zeros(sum(sizes[1:]), bool)])
    correct = np.concatenate([best == held.own, np.zeros(sum(sizes[1:]), bool)])
    per_item = np.concatenate([np.full(n, s / n) for n, s in zip(sizes, shares, strict=True)])
    fit_weights = per_item / per_item.mean()
    labels = (in_scope & correct).astype(np.float64)
    scale = np.maximum(features.std(axis=0), 1e-6)
    coef_scaled = fit_logistic(_design(features / scale), labels, fit_weights)
    coef = np.concatenate([[coef_scaled[0]], coef_scaled[1:] / scale])
    fusion = IntentFusion(alpha, tuple(coef.tolist()), 0.5, oos_prior)
    probs = fusion.probabilities(features)
    prior_weights = np.where(in_scope, (1.0 - oos_prior) * per_item, oos_prior * per_item)
    at_prior, weighted_accuracy = best_threshold(probs, correct, in_scope, prior_weights)
    cap = decline_cap(probs[: sizes[0]][correct[: sizes[0]]], max_declined)
    threshold = at_prior if cap is None else min(at_prior, cap)
    answered = probs >= threshold
    near = answered[sizes[0] : sizes[0] + sizes[1]]
    fusion.threshold = threshold
    fusion.stats = {
        "held_out": sizes[0],
        "near_misses": sizes[1],
        "probes": sizes[2] if len(sizes) > 2 else 0,
        "top1_by_alpha": {str(a): round(v, 4) for a, v in accuracy.items()},
        "held_out_in_scope_accuracy": round(float(np.mean((answered & correct)[in_scope])), 4),
        "held_out_near_miss_recall": round(float(1 - near.mean()), 4),
        "held_out_probe_recall": (
            round(float(1 - answered[sizes[0] + sizes[1] :].mean()), 4) if len(sizes) > 2 else None
        ),
        "weighted_accuracy_at_prior": round(weighted_accuracy, 4),
        "threshold_at_prior": round(at_prior, 4),
        "decline_cap": None if cap is None else round(cap, 4),
        "max_declined": max_declined,
    }
    return fusion


def decline_cap(right: np.ndarray, max_declined: float) -> float | None:
    """The highest threshold that declines at most `max_declined` of `right` (the confidences
    of held-out paraphrases ranked right); None when there are fewer than 1 / `max_declined`."""
    if max_declined >= 1.0 or len(right) < round(1.0 / max_declined):
        return None
    ordered = np.sort(right)
    return float(ordered[int(np.floor(max_declined * len(ordered)))])
