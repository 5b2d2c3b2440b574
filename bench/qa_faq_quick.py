"""Quick CLINC150 check of built bots: batched retrieval, the same policy as `qa eval`.

    python -m bench.qa_faq_quick BOTS_DIR [--data DIR]

Reads the bots `bench.qa_faq --bots BOTS_DIR` built (`clinc150-intent`, `clinc150-retrieval`),
ranks every dev query in one batched pass (same rankings and decisions as `qa eval`, which
encodes one query at a time) and times 200 queries one at a time for the latency p50. Used when
the sequential `qa eval` of 3,100 queries is too slow on a loaded CPU. Writes
bench/results/qa_faq_clinc150_quick.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.qa_faq import DEFAULT_DATA

RESULTS = Path(__file__).resolve().parent / "results" / "qa_faq_clinc150_quick.json"


def score(bot_dir: Path, queries_path: Path) -> dict:
    from threefold.apps.qa.evaluation import read_queries
    from threefold.apps.qa.policy import decide
    from threefold.apps.qa.store import BotStore

    labeled = read_queries(queries_path)
    bot = BotStore(bot_dir).load()
    results = bot.retrieve_many([q.query for q in labeled], k=10)
    right = oos_abstained = n_in = n_oos = top1 = 0
    reciprocal = 0.0
    outcomes: dict[str, int] = {}
    for item, result in zip(labeled, results, strict=True):
        decision = decide(
            confidence=result.confidence,
            margin=result.ranking.margin,
            confidence_if_clear=result.confidence_if_clear,
            settings=bot.policy_settings(),
            small_talk=bot.small_talk.match(item.query, result.vector),
        )
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
        answered = decision.outcome == "answer"
        top = result.ranking.top.faq_id if result.ranking.top else None
        if item.expected_id is None:
            n_oos += 1
            oos_abstained += not answered
            continue
        n_in += 1
        right += answered and top == item.expected_id
        top1 += top == item.expected_id
        ids = result.ranking.ids
        if item.expected_id in ids:
            reciprocal += 1 / (ids.index(item.expected_id) + 1)
    latencies = []
    for item in labeled[:: max(1, len(labeled) // 200)][:200]:
        started = time.perf_counter()
        bot.retrieve(item.query, k=10)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "in_scope_accuracy": round(right / n_in, 4),
        "oos_recall": round(oos_abstained / n_oos, 4),
        "top1_no_abstention": round(top1 / n_in, 4),
        "mrr": round(reciprocal / n_in, 4),
        "outcomes": outcomes,
        "threshold": round(bot.threshold, 4),
        "latency_p50_ms_200_sequential": round(float(np.percentile(latencies, 50)), 2),
        "build_seconds": bot.info.stats.get("build_seconds"),
        "intent": bot.info.stats.get("intent"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bots", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    queries = args.data / "clinc150" / "dev_queries.csv"
    report = {}
    for bot in ("intent", "retrieval"):
        report[bot] = score(args.bots / f"clinc150-{bot}", queries)
        print(bot, json.dumps(report[bot]), file=sys.stderr, flush=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
