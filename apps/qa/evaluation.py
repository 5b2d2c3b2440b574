"""The evaluation contract: accuracy with abstention, ranking quality, OOS detection, latency.

Every query is answered the way the chat API would (retrieve, calibrate, apply the policy with
small talk, one query at a time so latency is per query). The human-request and
repeated-failure rules are not applied: they are about the conversation, not the knowledge base.
`outcomes` counts the decisions; `details` (when given a list) receives one record per query.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.policy import PolicySettings, decide
from threefold.core.errors import DataError
from threefold.core.tables import read_records

RANK_DEPTH = 10


@dataclass(frozen=True)
class LabeledQuery:
    """A query and the FAQ id that answers it (None: out of scope, the bot should abstain)."""

    query: str
    expected_id: str | None


def read_queries(path: str | Path) -> list[LabeledQuery]:
    """Read `query,expected_id` (CSV/JSON/JSONL); an empty expected_id means out of scope."""
    records = read_records(
        path,
        required=("query", "expected_id"),
        non_empty=("query",),
        hint="(expected query, expected_id; leave expected_id empty for out-of-scope queries)",
    )
    queries = []
    for record in records:
        expected = record.values.get("expected_id")
        if expected is not None and not isinstance(expected, (str, int)):
            raise DataError(
                f"expected_id must be text, found {type(expected).__name__}",
                path=str(path),
                line=record.line,
                column="expected_id",
            )
        expected_text = str(expected).strip() if expected is not None else ""
        queries.append(LabeledQuery(str(record.values["query"]), expected_text or None))
    return queries


def evaluate(
    bot: Bot,
    queries: Sequence[LabeledQuery],
    *,
    settings: PolicySettings | None = None,
    details: list[dict[str, Any]] | None = None,
    allow_unknown_ids: bool = False,
) -> dict[str, Any]:
    """Score the bot on labeled queries; returns the contract's JSON-ready dict.

    in_scope_accuracy: share of in-scope queries answered with the right id (abstaining is
    wrong); recall_at_5 / mrr (of the top 10): of the ranking, whatever the policy decided;
    oos_precision: of the abstentions, the share that were out of scope; oos_recall: of the
    out-of-scope queries, the share not answered; overall_accuracy: right answers plus correct
    abstentions over all queries. Ratios without a denominator are null.

    An expected_id that is not an FAQ of this bot is a DataError, unless `allow_unknown_ids`
    (a gate set judging two bots of different KBs): the bot cannot answer such a query right.
    """
    if not queries:
        raise DataError("no queries to evaluate")
    unknown = sorted(
        {q.expected_id for q in queries if q.expected_id and q.expected_id not in bot.kb}
    )
    if unknown and not allow_unknown_ids:
        raise DataError(
            f"{len(unknown)} expected_id value(s) are not FAQ ids of this bot, e.g. {unknown[:5]}; "
            "check that the queries belong to this knowledge base"
        )
    settings = settings or bot.policy_settings()
    latencies: list[float] = []
    right = in_scope = oos = oos_abstained = abstained = 0
    recall_hits = 0
    reciprocal = 0.0
    outcomes: Counter[str] = Counter()
    for item in queries:
        started = time.perf_counter()
        result = bot.retrieve(item.query, k=RANK_DEPTH)
        decision = decide(
            confidence=result.confidence,
            margin=result.ranking.margin,
            confidence_if_clear=result.confidence_if_clear,
            settings=settings,
            small_talk=bot.small_talk.match(item.query, result.vector),
        )
        latencies.append((time.perf_counter() - started) * 1000)
        outcomes[decision.outcome] += 1
        answered = decision.outcome == "answer"
        top = result.ranking.top.faq_id if result.ranking.top else None
        if details is not None:
            details.append(
                {
                    "query": item.query,
                    "expected_id": item.expected_id,
                    "outcome": decision.outcome,
                    "reason": decision.reason,
                    "faq_id": top if answered else None,
                    "top_ids": result.ranking.ids[:5],
                    "confidence": round(result.confidence, 4),
                    "correct": (top == item.expected_id) if answered else item.expected_id is None,
                    "latency_ms": round(latencies[-1], 3),
                }
            )
        abstained += not answered
        if item.expected_id is None:
            oos += 1
            oos_abstained += not answered
            continue
        in_scope += 1
        right += answered and top == item.expected_id
        ids = result.ranking.ids
        if item.expected_id in ids[:5]:
            recall_hits += 1
        if item.expected_id in ids:
            reciprocal += 1.0 / (ids.index(item.expected_id) + 1)
    lat = np.asarray(latencies)
    return {
        "n": len(queries),
        "n_in_scope": in_scope,
        "n_out_of_scope": oos,
        "in_scope_accuracy": _ratio(right, in_scope),
        "recall_at_5": _ratio(recall_hits, in_scope),
        "mrr": _ratio(reciprocal, in_scope),
        "oos_precision": _ratio(oos_abstained, abstained),
        "oos_recall": _ratio(oos_abstained, oos),
        "overall_accuracy": _ratio(right + oos_abstained, len(queries)),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p95": round(float(np.percentile(lat, 95)), 3),
        },
        "outcomes": dict(sorted(outcomes.items())),
        "threshold": round(settings.threshold, 4),
        "ambiguity_margin": settings.ambiguity_margin,
        "bot_version": bot.version,
    }


def _ratio(num: float, den: int) -> float | None:
    return round(num / den, 4) if den else None
