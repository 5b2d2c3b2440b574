"""A built FAQ bot in memory: knowledge base + embedder + FAISS index + calibrated confidence.

With an intent model (`intent` head + `fusion`), a message's ranking fuses the head's
probabilities with the retrieval cosines (see `intent_fusion`); both come from one encoding.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from threefold.apps.qa.calibration import Calibrator
from threefold.apps.qa.intent_fusion import IntentFusion
from threefold.apps.qa.intent_model import IntentHead
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.apps.qa.policy import PolicySettings
from threefold.apps.qa.retrieval import Candidate, Ranking, aggregate
from threefold.apps.qa.small_talk import SmallTalk
from threefold.core.encoder import TextEncoder

DEFAULT_AMBIGUITY_MARGIN = 0.03
FOLLOW_UP_WEIGHT = 0.5


@dataclass(frozen=True)
class Retrieval:
    """A ranking plus its calibrated confidence (and the confidence had it not been ambiguous)."""

    ranking: Ranking
    confidence: float
    confidence_if_clear: float
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


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
        intent: IntentHead | None = None,
        fusion: IntentFusion | None = None,
    ) -> None:
        self.kb = kb
        self.index = index
        self.embedder = embedder
        self.calibrator = calibrator
        self.info = info
        self.intent = intent if fusion is not None else None
        self.fusion = fusion if intent is not None else None
        labels = intent.labels if self.intent else []
        # classifier columns of the FAQs still in the KB (deleted FAQs drop out)
        self._label_columns = np.array([i for i, x in enumerate(labels) if x in kb], dtype=int)
        self._label_ids = [labels[i] for i in self._label_columns]
        self.small_talk = SmallTalk(embedder)
        owners: dict[str, set[str]] = {}
        for entry in kb:
            for question in entry.questions:
                owners.setdefault(question_key(question), set()).add(entry.id)
        self._exact = {key: next(iter(ids)) for key, ids in owners.items() if len(ids) == 1}
        self._max_vectors_per_faq = max(
            (len(e.questions) + int(info.embed_answers) for e in kb), default=1
        )

    @property
    def version(self) -> str:
        return self.info.version

    def exact_faq(self, message: str) -> str | None:
        """The FAQ whose question the message repeats word for word (ignoring case, spacing and
        punctuation), or None. Such a message is answered from it even before a background
        rebuild has taught the intent head a question just added to the FAQ."""
        return self._exact.get(question_key(message))

    def with_embedder(self, embedder: TextEncoder) -> Bot:
        """The same bot answering through another encoder of the same weights (e.g. batching)."""
        return Bot(
            kb=self.kb,
            index=self.index,
            embedder=embedder,
            calibrator=self.calibrator,
            info=self.info,
            intent=self.intent,
            fusion=self.fusion,
        )

    @property
    def threshold(self) -> float:
        """The calibrated answer threshold (of the fusion when the bot has an intent model)."""
        return self.fusion.threshold if self.fusion else self.calibrator.threshold

    def encode(self, queries: Sequence[str], *, batch_size: int = 64) -> QueryEncoding:
        """One encoder pass: retrieval vectors, plus the intent head's logits over them."""
        vectors = self.embedder.encode(list(queries), batch_size=batch_size)
        logits = self.intent.logits(vectors) if self.intent is not None else None
        return QueryEncoding(vectors, logits)

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
            threshold=self.threshold if threshold is None else threshold,
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
        encoded = self.encode(queries, batch_size=batch_size)
        results = self.retrieve_vectors(encoded.vectors, k=k, logits=encoded.logits)
        return [
            replace(result, vector=vector)
            for result, vector in zip(results, encoded.vectors, strict=True)
        ]

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
        encoded = self.encode([message, context])
        vectors = encoded.vectors
        blended = weight * vectors[0] + (1.0 - weight) * vectors[1]
        blended /= max(float(np.linalg.norm(blended)), 1e-12)
        exclude = (answered,) if answered else ()
        query = blended[None, :].astype(np.float32)
        logits = self.intent.logits(query) if self.intent is not None else None
        return self.retrieve_vectors(query, k=k, exclude=exclude, logits=logits)[0]

    def retrieve_vectors(
        self,
        vectors: np.ndarray,
        k: int = 5,
        *,
        exclude: Collection[str] = (),
        logits: np.ndarray | None = None,
    ) -> list[Retrieval]:
        """Rankings for pre-computed query vectors: max(k, 2) FAQs each (2 for the margin).

        With intent `logits` (bots with an intent model) the ranking is the fused one.
        """
        keep = max(k, 2)
        depth = min(len(self.index), (keep + len(exclude)) * self._max_vectors_per_faq)
        if depth == 0:
            empty = Retrieval(Ranking(candidates=()), 0.0, 0.0)
            return [empty for _ in range(len(vectors))]
        if logits is not None and self.fusion is not None:
            hits_all = self.index.search(vectors, depth)
            return [
                self._fused(hits, row, keep, exclude)
                for hits, row in zip(hits_all, logits, strict=True)
            ]
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

    def _fused(
        self,
        hits: Sequence[tuple[str, float]],
        logits: np.ndarray,
        keep: int,
        exclude: Collection[str],
    ) -> Retrieval:
        """Fuse one message's retrieval hits with its intent logits (see intent_fusion)."""
        fusion = self.fusion
        if fusion is None:
            raise RuntimeError("fused retrieval needs a bot with an intent model")
        retrieved = aggregate(hits, len(self.kb), exclude=exclude)
        cosine = {c.faq_id: c for c in retrieved.candidates}
        floor = min((c.score for c in retrieved.candidates), default=0.0)
        row = logits[self._label_columns].astype(np.float64)
        for position, faq_id in enumerate(self._label_ids):
            if faq_id in exclude:
                row[position] = -np.inf
        by_probability = np.argsort(-row)[:keep]
        ids = list(dict.fromkeys([*cosine, *(self._label_ids[i] for i in by_probability)]))
        column = {faq_id: i for i, faq_id in enumerate(self._label_ids)}
        full_logits = np.full(len(ids), -np.inf)
        cos = np.array([cosine[f].score if f in cosine else floor for f in ids])
        known = np.array([f in column for f in ids])
        # the probabilities are over every FAQ the classifier knows, not just these candidates
        lse = float(np.logaddexp.reduce(row)) if len(row) else 0.0
        for j, faq_id in enumerate(ids):
            if faq_id in column:
                full_logits[j] = row[column[faq_id]]
        probs = np.exp(full_logits - lse)
        fused = np.where(known, fusion.alpha * probs + (1 - fusion.alpha) * cos, cos)
        order = np.argsort(-fused)[:keep]
        candidates = tuple(
            Candidate(
                faq_id=ids[j],
                score=float(fused[j]),
                matched=cosine[ids[j]].matched if ids[j] in cosine else "intent",
            )
            for j in order
        )
        ranking = Ranking(candidates=candidates)
        features = np.array(
            [
                ranking.top_score,
                ranking.margin,
                float(np.exp(row.max() - lse)) if len(row) else 0.0,
                lse,
                max(cos.max(initial=-1.0), -1.0),
            ]
        )
        confidence = float(fusion.probabilities(features)[0])
        clear = features.copy()
        clear[1] = max(clear[1], self.info.ambiguity_margin)
        return Retrieval(ranking, confidence, float(fusion.probabilities(clear)[0]))


def question_key(text: str) -> str:
    """A question compared word for word: case-folded, punctuation and spacing dropped."""
    return " ".join(re.findall(r"\w+", text.casefold()))


@dataclass(frozen=True)
class QueryEncoding:
    """What one forward pass gives for a batch of messages."""

    vectors: np.ndarray
    logits: np.ndarray | None
