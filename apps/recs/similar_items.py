"""Similar items: text first, the catalog's categories as agreement, co-occurrence breaks ties.

score = text cosine + CATEGORY_WEIGHT x (share of the query's categories the candidate has)
        + TIE_BREAK_WEIGHT x co-occurrence cosine

Text alone matches words, not kinds of thing: a mystery set on a train lands next to a wooden
train set. The category term keeps a book's neighbours books unless another item's text is
far closer; co-occurrence (at most TIE_BREAK_WEIGHT) only reorders items whose text scores are
close, so a brand-new item with no interactions is found by its text as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CATEGORY_WEIGHT = 0.15
TIE_BREAK_WEIGHT = 0.02
POOL_FACTOR = 5
MIN_POOL = 50


def pool_size(k: int) -> int:
    """How many text neighbours to re-rank for a top-k answer."""
    return max(MIN_POOL, POOL_FACTOR * k)


def category_agreement(query: Sequence[str], candidate: Sequence[str]) -> float:
    """Share of the query item's categories (case-insensitive) the candidate also has."""
    wanted = {c.lower() for c in query}
    if not wanted:
        return 0.0
    return len(wanted & {c.lower() for c in candidate}) / len(wanted)


def rank_similar(
    text_scores: Sequence[float],
    query_categories: Sequence[str],
    candidate_categories: Sequence[Sequence[str]],
    cooccurrence: Callable[[int], float],
    k: int,
) -> list[tuple[int, float]]:
    """(candidate row, score) of the best `k`, best first; `cooccurrence(row)` is in [0, 1]."""
    scores = np.array(
        [
            float(text)
            + CATEGORY_WEIGHT * category_agreement(query_categories, categories)
            + TIE_BREAK_WEIGHT * cooccurrence(row)
            for row, (text, categories) in enumerate(
                zip(text_scores, candidate_categories, strict=True)
            )
        ],
        dtype=np.float64,
    )
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(row), float(scores[row])) for row in order]
