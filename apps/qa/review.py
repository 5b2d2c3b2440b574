"""The review queue: signals waiting for a person to turn them into knowledge-base changes.

Items come from the signal logs (`feedback.FeedbackStore`): questions the bot declined
(unanswered / out of scope), answers a customer voted down, and agents' replies. Declined
questions are clustered by meaning (the bot's embedder; single-link: each question joins the
cluster of its nearest earlier one on a FAISS index from `core.index`), so twenty ways of asking
the same missing thing are one item to review. A reviewed item (turned into a paraphrase or a
new FAQ) or a dismissed one leaves the queue: its id is appended to the "reviewed" log with who
did what.

This module is pure apart from the logs it reads and appends to; the KB edit itself is applied by
the caller through `BotManager.edit` (the atomic edit path).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.feedback import FeedbackStore
from threefold.apps.qa.knowledge_base import FaqEntry, KnowledgeBase, question_key
from threefold.core.errors import DataError

REVIEWED_LOG = "reviewed"
KINDS = ("unanswered", "thumbs_down", "agent_reply")
ACTIONS = ("paraphrase", "new_faq", "dismiss")
CLUSTER_SIMILARITY = 0.55  # cosine to a clustered question to join its cluster (MiniLM:
# paraphrases of one request score 0.6-0.75, unrelated questions below 0.35)
DEFAULT_LIMIT = 200  # newest pending items of each kind shown
NOT_KB_GAPS = ("requested",)  # unanswered because the customer asked for a person


@dataclass(frozen=True)
class ReviewItem:
    """One signal to review; `id` is stable (derived from the record), so a queue can be re-read."""

    id: str
    kind: str
    ts: float
    session_id: str
    question: str
    bot_version: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ts": self.ts,
            "session_id": self.session_id,
            "question": self.question,
            "bot_version": self.bot_version,
            **self.details,
        }


@dataclass
class ReviewGroup:
    """Items reviewed together: a cluster of declined questions, or one thumbs-down / reply."""

    kind: str
    items: list[ReviewItem]
    suggested_faq: dict[str, str] | None = None

    @property
    def id(self) -> str:
        return _digest("group", *sorted(item.id for item in self.items))

    def questions(self) -> list[str]:
        """The distinct questions, most asked first."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.question] = counts.get(item.question, 0) + 1
        return sorted(counts, key=lambda q: -counts[q])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "size": len(self.items),
            "questions": self.questions(),
            "item_ids": [item.id for item in self.items],
            "items": [item.to_json() for item in self.items],
            "suggested_faq": self.suggested_faq,
            "last_ts": max(item.ts for item in self.items),
        }


class ReviewQueue:
    """Pending review items read from the signal logs, minus those already reviewed."""

    def __init__(self, feedback: FeedbackStore) -> None:
        self.feedback = feedback

    def pending(self, *, limit: int = DEFAULT_LIMIT) -> list[ReviewItem]:
        """Items not reviewed yet, newest `limit` of each kind, oldest first."""
        done = self.reviewed_ids()
        items: list[ReviewItem] = []
        for kind, records in (
            ("unanswered", [r for r in self.feedback.unanswered() if _kb_gap(r)]),
            ("thumbs_down", [r for r in self.feedback.feedback() if r.get("rating") == "down"]),
            ("agent_reply", self.feedback.agent_replies()),
        ):
            fresh = [i for i in map(_item_maker(kind), records) if i.id not in done and i.question]
            items += fresh[-limit:]
        return sorted(items, key=lambda i: i.ts)

    def reviewed_ids(self) -> set[str]:
        return {
            item_id
            for record in self.feedback.log.read(REVIEWED_LOG)
            for item_id in record.get("items", ())
        }

    def groups(self, bot: Bot, *, limit: int = DEFAULT_LIMIT) -> list[ReviewGroup]:
        """Pending items grouped for review, biggest cluster first, each with the FAQ it most
        likely belongs to (the bot's top candidate for its most asked question)."""
        pending = self.pending(limit=limit)
        declined = [i for i in pending if i.kind == "unanswered"]
        groups = [ReviewGroup("unanswered", members) for members in cluster(bot, declined)]
        groups += [ReviewGroup(i.kind, [i]) for i in pending if i.kind != "unanswered"]
        if groups:
            leads = [g.questions()[0] for g in groups]
            for group, result in zip(groups, bot.retrieve_many(leads, k=1), strict=True):
                top = result.ranking.top
                if top is not None:
                    group.suggested_faq = {
                        "faq_id": top.faq_id,
                        "question": bot.kb[top.faq_id].question,
                    }
        groups.sort(key=lambda g: (-len(g.items), -max(i.ts for i in g.items)))
        return groups

    def find(self, item_ids: Sequence[str], *, limit: int | None = None) -> list[ReviewItem]:
        """The pending items with these ids; DataError naming the ones not pending."""
        if not item_ids:
            raise DataError("'items' is empty; expected the ids of the review items to act on")
        by_id = {i.id: i for i in self.pending(limit=limit or 10**9)}
        missing = [item_id for item_id in item_ids if item_id not in by_id]
        if missing:
            raise DataError(
                f"review item(s) {missing[:5]} are not in the queue (already reviewed, dismissed "
                "or unknown). Fix: reload the queue (GET /api/review) and use its item ids"
            )
        return [by_id[item_id] for item_id in dict.fromkeys(item_ids)]

    def mark_reviewed(
        self, items: Iterable[ReviewItem], *, action: str, who: str, **details: Any
    ) -> dict[str, Any]:
        """Take the items out of the queue, recording who did what."""
        record = {
            "ts": round(time.time(), 3),
            "who": who,
            "action": action,
            "items": [item.id for item in items],
            **details,
        }
        self.feedback.log.append(REVIEWED_LOG, record)
        return record


def _kb_gap(record: dict[str, Any]) -> bool:
    """An unanswered question the KB could answer (not a plain request for a person)."""
    return record.get("reason") not in NOT_KB_GAPS


def cluster(
    bot: Bot, items: Sequence[ReviewItem], *, similarity: float = CLUSTER_SIMILARITY
) -> list[list[ReviewItem]]:
    """Group items whose questions mean the same: each joins the cluster of its nearest earlier
    question when that is within `similarity` (cosine, the bot's embedder), else starts one."""
    from threefold.core.index import FaissIndex

    if not items:
        return []
    vectors = np.asarray(bot.embedder.encode([i.question for i in items]), dtype=np.float32)
    seen = FaissIndex(vectors.shape[1])
    clusters: list[list[ReviewItem]] = []
    for n, (item, vector) in enumerate(zip(items, vectors, strict=True)):
        hits = seen.search(vector[None, :], 1)[0]
        if hits and hits[0][1] >= similarity:
            number = int(hits[0][0].partition(":")[0])
        else:
            number = len(clusters)
            clusters.append([])
        clusters[number].append(item)
        seen.add([f"{number}:{n}"], vector[None, :])
    return clusters


def with_paraphrases(kb: KnowledgeBase, faq_id: str, questions: Sequence[str]) -> FaqEntry:
    """The FAQ `faq_id` with `questions` added as paraphrases (ones it already has are skipped)."""
    entry = kb.get(faq_id)
    if entry is None:
        raise KeyError(faq_id)
    known = {q.casefold() for q in entry.questions}
    added = [q for q in _clean(questions) if q.casefold() not in known]
    return FaqEntry(
        id=entry.id,
        questions=(*entry.questions, *dict.fromkeys(added)),
        answer=entry.answer,
        category=entry.category,
        metadata=entry.metadata,
    )


def questions_of_other_faqs(
    kb: KnowledgeBase, questions: Sequence[str], faq_id: str
) -> dict[str, str]:
    """The questions (case and spacing aside) that another FAQ has and `faq_id` has not, with
    that FAQ's id: adding them would give two FAQs the same question. A question `faq_id` has
    already stays its own, also where a KB saved before this check has it under another FAQ too."""
    owners = kb.question_owners()
    found = {q: owners.get(question_key(q), []) for q in _clean(questions)}
    return {q: ids[0] for q, ids in found.items() if ids and faq_id not in ids}


def _clean(questions: Sequence[str]) -> list[str]:
    return [q.strip() for q in questions if isinstance(q, str) and q.strip()]


def _item_maker(kind: str) -> Callable[[dict[str, Any]], ReviewItem]:
    def make(record: dict[str, Any]) -> ReviewItem:
        ts = float(record.get("ts") or 0.0)
        session_id = str(record.get("session_id", ""))
        question = str(record.get("question", ""))
        key = record.get("turn_id") or ts
        details: dict[str, Any]
        if kind == "unanswered":
            details = {
                "reason": record.get("reason", ""),
                "confidence": record.get("confidence"),
            }
        elif kind == "thumbs_down":
            details = {
                "faq_id": record.get("faq_id", ""),
                "answer": record.get("answer", ""),
                "comment": record.get("comment", ""),
            }
        else:
            details = {"agent": record.get("agent", ""), "reply": record.get("reply", "")}
        return ReviewItem(
            id=_digest(kind, session_id, str(key), question),
            kind=kind,
            ts=ts,
            session_id=session_id,
            question=question,
            bot_version=str(record.get("bot_version", "")),
            details=details,
        )

    return make


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]
