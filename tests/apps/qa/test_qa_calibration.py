"""Calibrated confidence: logistic/isotonic fits, threshold choice, default fallback."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.apps.qa.calibration import (
    DEFAULT_THRESHOLD,
    Calibrator,
    best_threshold,
    fit_calibrator,
)
from threefold.core.errors import ConfigError


def synthetic(seed: int = 0, n: int = 300) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    top = np.r_[rng.normal(0.8, 0.08, n), rng.normal(0.45, 0.08, n)]
    margin = np.abs(np.r_[rng.normal(0.15, 0.05, n), rng.normal(0.04, 0.03, n)])
    correct = np.r_[rng.random(n) < 0.9, np.zeros(n, dtype=bool)]
    in_scope = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    return top, margin, correct, in_scope


@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_fitted_probabilities_separate_in_scope_from_out_of_scope(method: str) -> None:
    top, margin, correct, in_scope = synthetic()
    calibrator = fit_calibrator(top, margin, correct, in_scope, method=method)
    assert calibrator.source == "held-out"
    probs = calibrator.probabilities(top, margin)
    assert probs[in_scope & correct].mean() > 0.8
    assert probs[~in_scope].mean() < 0.2
    assert 0.05 < calibrator.threshold < 0.95
    assert calibrator.stats["weighted_accuracy_at_threshold"] > 0.85
    grid = np.linspace(0.2, 1.0, 50)
    assert np.all(np.diff(calibrator.probabilities(grid, np.full(50, 0.1))) >= -1e-12)


def test_isotonic_probability_matches_the_observed_rate() -> None:
    # In-scope tops are right 90% of the time whatever their score: a flat 0.9 plateau that
    # isotonic calibration recovers (a logistic curve would overshoot towards 1).
    top, margin, correct, in_scope = synthetic(seed=1, n=2000)
    calibrator = fit_calibrator(top, margin, correct, in_scope, method="isotonic")
    probs = calibrator.probabilities(top, margin)
    confident = probs > 0.7
    observed = (correct & in_scope)[confident].mean()
    assert abs(observed - probs[confident].mean()) < 0.02


def test_best_threshold_maximizes_accuracy() -> None:
    probs = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    correct = np.array([False, False, False, True, False, True])
    in_scope = np.array([False, False, True, True, True, True])
    threshold, accuracy = best_threshold(probs, correct, in_scope, np.ones(6))
    assert 0.3 < threshold <= 0.6
    assert accuracy == pytest.approx(4 / 6)


def test_too_few_held_out_paraphrases_fall_back_to_the_default() -> None:
    calibrator = fit_calibrator([0.9, 0.8], [0.2, 0.1], [True, True], [True, False])
    assert calibrator.source == "default"
    assert calibrator.threshold == DEFAULT_THRESHOLD
    assert calibrator.confidence(0.95, 0.3) > 0.9
    assert calibrator.confidence(0.3, 0.01) < 0.1


def test_round_trip_and_threshold_override() -> None:
    top, margin, correct, in_scope = synthetic()
    calibrator = fit_calibrator(top, margin, correct, in_scope, method="isotonic")
    again = Calibrator.from_dict(calibrator.to_dict())
    assert again.confidence(0.7, 0.1) == pytest.approx(calibrator.confidence(0.7, 0.1))
    assert calibrator.with_threshold(0.9).threshold == 0.9


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="calibration method 'platt' is not supported"):
        Calibrator(method="platt")
    with pytest.raises(ConfigError, match=r"threshold must be within \[0, 1\], found 1.5"):
        Calibrator(threshold=1.5)
