"""The combiner: pairwise fitting and its dict round trip."""

from __future__ import annotations

import numpy as np

from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.ranking_features import FEATURES


def test_pairwise_fit_puts_weight_on_the_feature_that_separates():
    rng = np.random.default_rng(0)
    signal = FEATURES.index("cooccurrence")
    positives, negatives = [], []
    for _ in range(200):
        negative = rng.random((10, len(FEATURES))).astype(np.float32)
        positive = rng.random(len(FEATURES)).astype(np.float32)
        positive[signal] = 1.0 + rng.random()  # always above every negative
        positives.append(positive)
        negatives.append(negative)
    combiner = LinearCombiner.fit_pairwise(np.stack(positives), negatives)
    weights = combiner.weights
    assert weights["cooccurrence"] == max(weights.values())
    assert weights["cooccurrence"] > 5 * max(
        abs(w) for f, w in weights.items() if f != "cooccurrence"
    )
    restored = LinearCombiner.from_dict(combiner.to_dict())
    sample = np.stack(positives[:3])
    assert np.allclose(restored.score(sample), combiner.score(sample))
