"""One figure over several seeded runs, as the benchmark results record it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_and_spread(key: str, values: Sequence[float]) -> dict[str, object]:
    """`{key: mean, key_spread: [min, max]}` of `values`, rounded to 4 places."""
    values = [float(v) for v in values]
    return {
        key: round(statistics.mean(values), 4),
        f"{key}_spread": [round(min(values), 4), round(max(values), 4)],
    }
