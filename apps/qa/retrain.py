"""`threefold retrain qa`: rebuild the bot from its current KB, judge it on a gate set, publish.

The candidate is built from the live version's knowledge base (the base FAQ plus everything the
review queue and the admin API added since) or from a given KB file, with the live bot's build
options and its encoder (a fine-tuned encoder is reused, not fine-tuned again). Candidate and
live version answer the same fixed gate set (CSV `question,faq_id`, an empty faq_id = out of
scope) that no build sees: a gate question found verbatim among the KB's questions or answers or
the out-of-scope calibration examples is an error (the score would be inflated), never silently
dropped. The gate metric is the
evaluation contract's `overall_accuracy` (answered correctly, or correctly declined, over all
gate questions). `core.gate` decides; the candidate is published either way, current only when
promoted, with the comparison in its registry metadata. Running servers follow the pointer.
`GateSet` is that gate; the server's background rebuild after a KB edit goes through it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.bot_manager import retrained
from threefold.apps.qa.builder import GENERIC_OOS_PROBES, BuildOptions
from threefold.apps.qa.evaluation import LabeledQuery, evaluate
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.apps.qa.store import BotStore
from threefold.core.errors import DataError, ModelError
from threefold.core.gate import GateDecision, judge, publish_gated, retrain_report
from threefold.core.registry import data_fingerprint
from threefold.core.tables import read_records

GATE_METRIC = "accuracy"
CREATED_BY = "qa retrain"
REPORTED = ("overall_accuracy", "in_scope_accuracy", "oos_recall", "n", "bot_version")


def read_gate_set(path: str | Path) -> list[LabeledQuery]:
    """The gate set: `question,faq_id` rows (CSV/JSON/JSONL); an empty faq_id = out of scope."""
    records = read_records(
        path,
        required=("question", "faq_id"),
        non_empty=("question",),
        hint="(the gate set is question,faq_id; leave faq_id empty for out-of-scope questions)",
    )
    if not records:
        raise DataError("the gate set has no rows; add question,faq_id lines", path=str(path))
    queries = []
    for record in records:
        faq_id = record.values.get("faq_id")
        text = "" if faq_id is None else str(faq_id).strip()
        queries.append(LabeledQuery(str(record.values["question"]).strip(), text or None))
    return queries


def training_texts(bot: Bot, kb: KnowledgeBase | None = None) -> set[str]:
    """Every text a build of `bot`'s options on `kb` (default its own) learns or calibrates from:
    the KB's questions and answers, the operator's out-of-scope examples, the built-in probes."""
    options = BuildOptions.from_dict(bot.info.options)
    kb = bot.kb if kb is None else kb
    texts = [text for entry in kb for _, text in entry.texts(with_answer=True)]
    texts += list(options.oos_probes)
    if options.generic_oos:
        texts += GENERIC_OOS_PROBES
    return {_normalized(text) for text in texts}


def seen_in_training(queries: list[LabeledQuery], texts: set[str]) -> list[str]:
    """Gate questions found verbatim (case, spacing and punctuation aside) among `texts`."""
    return [q.query for q in queries if _normalized(q.query) in texts]


def check_unseen(queries: list[LabeledQuery], texts: set[str]) -> None:
    """DataError with the fix when a build has seen gate questions (`training_texts`)."""
    seen = seen_in_training(queries, texts)
    if seen:
        raise DataError(
            f"{len(seen)} gate question(s) appear verbatim in the training data (the knowledge "
            f"base or the out-of-scope examples), e.g. {seen[:3]}; a gate set must be questions "
            "no build has seen, or the comparison flatters whichever bot learned them. Fix: "
            "remove them from the gate set (or replace them with new wordings), or remove them "
            "from the KB"
        )


def check_ids(queries: list[LabeledQuery], *kbs: KnowledgeBase) -> None:
    """DataError when a gate faq_id is an FAQ of none of the bots (a typo, most likely)."""
    known = {faq_id for kb in kbs for faq_id in kb.ids}
    unknown = sorted(
        {q.expected_id for q in queries if q.expected_id and q.expected_id not in known}
    )
    if unknown:
        raise DataError(
            f"{len(unknown)} gate faq_id value(s) are FAQs of neither bot, e.g. {unknown[:5]}. "
            "Fix: use ids of the knowledge base (GET /api/kb), or leave faq_id empty for an "
            "out-of-scope question"
        )


def candidate_bot(current: Bot, kb: KnowledgeBase | None = None) -> Bot:
    """The candidate: `kb` (default the live KB) rebuilt with the live bot's options."""
    candidate = retrained(current, kb)
    candidate.info.parent = current.version
    return candidate


@dataclass(frozen=True)
class GateSet:
    """A gate set read once, and the gate it sets: judge a candidate bot against the current
    one, publish it gated. `threefold retrain qa` and the server's background rebuild after a
    KB edit (`BotManager`, when THREEFOLD_QA_GATE_SET is set) both go through it."""

    path: Path
    queries: tuple[LabeledQuery, ...]
    fingerprint: str
    margin: float = 0.0

    @classmethod
    def read(cls, path: str | Path, *, margin: float = 0.0) -> GateSet:
        """Read `path` (`read_gate_set`); `margin`: see `core.gate.judge`."""
        queries = tuple(read_gate_set(path))
        return cls(Path(path), queries, data_fingerprint(Path(path)), margin)

    def info(self) -> dict[str, Any]:
        """What the registry metadata and the report record of the gate set."""
        return {"path": str(self.path), "n": len(self.queries), "fingerprint": self.fingerprint}

    def check(self, current: Bot, candidate_kb: KnowledgeBase | None = None) -> None:
        """DataError before a build whose comparison would mean nothing: a gate question the
        build sees, or a gate faq_id of neither KB (`check_unseen`, `check_ids`)."""
        queries = list(self.queries)
        kb = current.kb if candidate_kb is None else candidate_kb
        check_unseen(queries, training_texts(current) | training_texts(current, kb))
        check_ids(queries, kb, current.kb)

    def judge(self, candidate: Bot, current: Bot) -> tuple[GateDecision, dict[str, Any]]:
        """The gate's decision on `overall_accuracy` and both evaluations (candidate, current)."""
        scores = {
            name: evaluate(bot, self.queries, allow_unknown_ids=True)
            for name, bot in (("candidate", candidate), ("current", current))
        }
        decision = judge(
            GATE_METRIC,
            scores["candidate"]["overall_accuracy"],
            scores["current"]["overall_accuracy"],
            margin=self.margin,
        )
        return decision, scores

    def publish(
        self,
        store: BotStore,
        candidate: Bot,
        current: Bot,
        decision: GateDecision,
        *,
        created_by: str,
        **metadata: Any,
    ) -> str:
        """Publish `candidate`, current only when `decision` promoted it (call it under the
        store's edit lock); returns its version."""
        return publish_gated(
            store.entry,
            store.writer(candidate),
            decision,
            metadata=store.metadata(
                candidate,
                created_by=created_by,
                gate_set=self.info(),
                current_metrics={GATE_METRIC: decision.current, "version": current.version},
                **metadata,
            ),
        )


def retrain(
    store: BotStore,
    gate_set: str | Path,
    *,
    margin: float = 0.0,
    kb: KnowledgeBase | None = None,
) -> dict[str, Any]:
    """Build, judge and publish a candidate; returns the `threefold retrain` JSON report."""
    gate = GateSet.read(gate_set, margin=margin)
    current = store.load()
    gate.check(current, kb)
    candidate = candidate_bot(current, kb)
    decision, scores = gate.judge(candidate, current)
    with store.edit_lock():  # as the API's edits do: none lands between this check and publish
        now_current = store.current_version()
        if now_current != current.version:
            raise ModelError(
                f"the bot changed during the retrain: version {now_current} is current now, the "
                f"retrain started from {current.version} (an admin edit or another publish), so "
                "its candidate would discard that change. Nothing published. Fix: run the "
                "retrain again"
            )
        version = gate.publish(store, candidate, current, decision, created_by=CREATED_BY)
    scores["candidate"]["bot_version"] = version  # it had none while it was evaluated
    return retrain_report(
        "qa",
        store.entry,
        version,
        current.version,
        decision,
        gate_set=gate.info(),
        evaluation={
            name: {key: result[key] for key in REPORTED} for name, result in scores.items()
        },
    )


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))
