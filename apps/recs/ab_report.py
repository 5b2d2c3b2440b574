"""The A/B readout: per variant lists, items shown, clicks, purchases, CTR, and a test vs control.

CTR = attributed clicks / items shown. Each variant is compared with the control ("current")
by a two-proportion z-test on CTR (pooled standard error, two-sided p-value) and a confidence
interval on the CTR difference (unpooled, normal approximation). Items shown in one list are
not independent trials (one user, one moment), so treat p-values near the threshold with care;
the test is sound when lists are short compared with the number of lists.

Lists the control ranked for a pinned variant whose version was missing (`v5:fallback`, see
`ab_buckets.fallback_label`) get a row of their own, marked `fallback_for`, with no test: they
are neither the variant's nor the control's. The variants the control serves now (`fallbacks`:
variant -> why, e.g. its version is missing from the registry) are named with a warning each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

from threefold.apps.recs.ab_buckets import CONTROL, fallback_of, fallback_warning
from threefold.apps.recs.impressions import COUNTS, AbCounts


def two_proportion_test(
    hits_a: int, trials_a: int, hits_b: int, trials_b: int, confidence: float = 0.95
) -> dict[str, float | None]:
    """b vs a: difference of rates, its confidence interval, z and the two-sided p-value."""
    if trials_a == 0 or trials_b == 0:
        return {"diff": None, "ci_low": None, "ci_high": None, "z": None, "p_value": None}
    rate_a, rate_b = hits_a / trials_a, hits_b / trials_b
    diff = rate_b - rate_a
    pooled = (hits_a + hits_b) / (trials_a + trials_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    se = math.sqrt(rate_a * (1 - rate_a) / trials_a + rate_b * (1 - rate_b) / trials_b)
    margin = NormalDist().inv_cdf(0.5 + confidence / 2) * se
    return {
        "diff": diff,
        "ci_low": diff - margin,
        "ci_high": diff + margin,
        "z": z,
        "p_value": p_value,
    }


def _totals(versions: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {name: sum(int(row.get(name, 0)) for row in versions.values()) for name in COUNTS}


def _rates(row: dict[str, int]) -> dict[str, Any]:
    shown = row["shown"]
    return {
        **row,
        "ctr": row["click"] / shown if shown else None,
        "purchase_rate": row["purchase"] / shown if shown else None,
    }


def ab_report(
    counts: AbCounts, confidence: float = 0.95, fallbacks: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Per variant (all its versions together, and each version) the counts, CTR and the test.

    The control's row and fallback rows have no `vs_control`; a variant is compared with the
    control only when both have shown items. Rates are unrounded so a reader can recompute
    them from the counts. A variant in `fallbacks` has `fallback: true` on its row (its counts
    are from before the control took over).
    """
    fallbacks = dict(sorted((fallbacks or {}).items()))
    control = _totals(counts.get(CONTROL, {}))
    variants: dict[str, Any] = {}
    for name in sorted(counts, key=lambda n: (n != CONTROL, n)):
        row = _rates(_totals(counts[name]))
        row["versions"] = {
            version: _rates({key: int(values.get(key, 0)) for key in COUNTS})
            for version, values in sorted(counts[name].items())
        }
        if (variant := fallback_of(name)) is not None:
            row["fallback_for"] = variant
        elif name != CONTROL:
            row["vs_control"] = two_proportion_test(
                control["click"], control["shown"], row["click"], row["shown"], confidence
            )
            row["fallback"] = name in fallbacks
        variants[name] = row
    return {
        "control": CONTROL,
        "metric": "ctr",
        "confidence": confidence,
        "variants": variants,
        "fallbacks": fallbacks,
        "warnings": [fallback_warning(name, why) for name, why in fallbacks.items()],
    }
