"""A built FAQ bot in memory: knowledge base + embedder + FAISS index + calibrated confidence."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from threefold.apps.qa.calibration import Calibrator
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.apps.qa.policy import PolicySettings
from threefold.apps.qa.retrieval import Ranking, aggregate
from threefold.core.encoder import TextEncoder

DEFAULT_AMBIGUITY_MARGIN = 0.03
FOLLOW_UP_WEIGHT = 0.5


@dataclass(frozen=True)
class Retrieval:
    """A ranking plus its calibrated confidence (and the confidence had it not been ambiguous)."""

    ranking: Ranking
    confidence: float
    confidence_if_clear: float


@dataclass
class BotInfo:
    """What bot.json records about a build: version lineage, embedder, options, statistics."""

    version: str = ""
    parent: str | None = None
    created_at: float = 0.0
    embedder: dict[str, Any] = field(default_factory=dict)
    embed_answers: bool = True
    ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN
    options: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class Bot:
    """Answers queries from one immutable snapshot of the KB; edits build a new Bot."""

    def __init__(
        self,
        *,
        kb: KnowledgeBase,
        index: Any,
        embedder: TextEncoder,
        calibrator: Calibrator,
        info: BotInfo,
    ) -> None:
        self.kb = kb
        self.index = index
        self.embedder = embedder
        self.calibrator = calibrator
        self.info = info
        self._max_vectors_per_faq = max(
            (len(e.questions) + int(info.embed_answers) for e in kb), default=1
        )

    @property
    def version(self) -> str:
        return self.info.version

    def policy_settings(
        self,
        *,
        threshold: float | None = None,
        ambiguity_margin: float | None = None,
        handoff_after_failures: int = 2,
        n_suggestions: int = 3,
    ) -> PolicySettings:
        """Policy knobs from the build, with optional overrides (e.g. from the app config)."""
        return PolicySettings(
            threshold=self.calibrator.threshold if threshold is None else threshold,
            ambiguity_margin=(
                self.info.ambiguity_margin if ambiguity_margin is None else ambiguity_margin
            ),
            handoff_after_failures=handoff_after_failures,
            n_suggestions=n_suggestions,
        )

    def retrieve(self, query: str, k: int = 5) -> Retrieval:
        """Rank the FAQ for one query and score the top candidate."""
        return self.retrieve_many([query], k=k)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int = 5, *, batch_size: int = 64
    ) -> list[Retrieval]:
        vectors = self.embedder.encode(list(queries), batch_size=batch_size)
        return self.retrieve_vectors(vectors, k=k)

    def retrieve_in_context(
        self,
        message: str,
        context: str,
        *,
        answered: str | None = None,
        weight: float = FOLLOW_UP_WEIGHT,
        k: int = 5,
    ) -> Retrieval:
        """Retrieve for a follow-up such as "and to Mexico?" after "How long to Canada?".

        The message's vector is blended with the previous message's (`weight` for the message),
        and the FAQ that already answered the previous message is left out: a follow-up asks
        about a neighbour of that FAQ, not for the same answer again.
        """
        vectors = self.embedder.encode([message, context])
        blended = weight * vectors[0] + (1.0 - weight) * vectors[1]
        blended /= max(float(np.linalg.norm(blended)), 1e-12)
        exclude = (answered,) if answered else ()
        query = blended[None, :].astype(np.float32)
        return self.retrieve_vectors(query, k=k, exclude=exclude)[0]

    def retrieve_vectors(
        self, vectors: np.ndarray, k: int = 5, *, exclude: Collection[str] = ()
    ) -> list[Retrieval]:
        """Rankings for pre-computed query vectors: max(k, 2) FAQs each (2 for the margin)."""
        keep = max(k, 2)
        depth = min(len(self.index), (keep + len(exclude)) * self._max_vectors_per_faq)
        if depth == 0:
            empty = Retrieval(Ranking(candidates=()), 0.0, 0.0)
            return [empty for _ in range(len(vectors))]
        results = []
        margin_if_clear = self.info.ambiguity_margin
        for hits in self.index.search(vectors, depth):
            ranking = aggregate(hits, keep, exclude=exclude)
            confidence = self.calibrator.confidence(ranking.top_score, ranking.margin)
            if_clear = self.calibrator.confidence(
                ranking.top_score, max(ranking.margin, margin_if_clear)
            )
            results.append(Retrieval(ranking, confidence, if_clear))
        return results
