"""Rank FAQ entries for a query: nearest question/answer vectors, aggregated per FAQ id (max)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

VECTOR_SEPARATOR = "#"


def vector_id(faq_id: str, key: str) -> str:
    """Index id of one FAQ text: `<faq id>#q<n>` for a question, `<faq id>#a` for the answer."""
    return f"{faq_id}{VECTOR_SEPARATOR}{key}"


def faq_id_of(vector: str) -> str:
    return vector.rsplit(VECTOR_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Candidate:
    """One FAQ in a ranking: its best cosine over its vectors and which text matched."""

    faq_id: str
    score: float
    matched: str


@dataclass(frozen=True)
class Ranking:
    """FAQ candidates best first, with the features the calibrator reads."""

    candidates: tuple[Candidate, ...]

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def top_score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0

    @property
    def margin(self) -> float:
        """Cosine gap between the first and second FAQ (the top score when there is one FAQ)."""
        if len(self.candidates) < 2:
            return max(self.top_score, 0.0)
        return self.candidates[0].score - self.candidates[1].score

    @property
    def ids(self) -> list[str]:
        return [c.faq_id for c in self.candidates]


def aggregate(
    hits: Sequence[tuple[str, float]], k: int, *, exclude: Collection[str] = ()
) -> Ranking:
    """Keep the best-scoring vector per FAQ id; return the top k FAQs (hits are best first)."""
    seen: dict[str, Candidate] = {}
    for vid, score in hits:
        faq_id, _, key = vid.rpartition(VECTOR_SEPARATOR)
        if faq_id not in seen and faq_id not in exclude:
            seen[faq_id] = Candidate(faq_id=faq_id, score=float(score), matched=key)
            if len(seen) >= k:
                break
    return Ranking(candidates=tuple(seen.values()))


def per_id_max(similarities: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Max over each FAQ's columns: (n, n_vectors) -> (n, n_faqs); vectors grouped by FAQ."""
    return np.maximum.reduceat(similarities, group_starts, axis=1)
