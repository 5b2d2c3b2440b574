"""Benchmark: the QA bot's eval contract on CLINC150 and StackFAQ, with a BM25 baseline.

    python -m bench.qa_faq [--data DIR] [--datasets clinc150,stackfaq] [--fine-tune-steps N]
                           [--bots DIR] [--threads 1]

For each dataset runs `threefold qa build --kb DIR/<ds>/kb.csv --out TMP` (CLINC150 also gets
`--oos DIR/clinc150/oos_train.csv`: the official out-of-scope *training* examples as calibration
negatives) and `threefold qa eval --bot TMP --queries DIR/<ds>/dev_queries.csv`, once with the
bot's calibrated threshold and once answering everything (`--threshold 0 --ambiguity-margin 0`,
the top-1 accuracy comparable to a baseline without abstention). The BM25 baseline (rank-bm25,
Okapi, lower-cased word tokens; StackFAQ indexes question + answer as in the reference) ranks the
same KB in the same run; it never abstains. `--bots DIR` keeps the built bots in DIR/<dataset>
and reuses them on the next run. The commands run with OMP_NUM_THREADS=--threads (default 1):
on a CPU shared with other jobs, intra-op threads made single-query encoding ~10x slower.
Writes bench/results/qa_faq.json and prints one Markdown row per dataset:

| dataset | split | queries | in-scope acc | OOS recall | overall acc | top-1 (no abstain) |
  MRR | R@5 | BM25 top-1 | BM25 MRR | p50 / p95 ms |   (one row)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from bench.commands import threefold_command

DEFAULT_DATA = Path("/work/shared/data/faq")
RESULTS = Path(__file__).resolve().parent / "results" / "qa_faq.json"
DATASETS = {
    "clinc150": {"oos": "oos_train.csv", "bm25_answers": False},
    "stackfaq": {"oos": None, "bm25_answers": True},
}
TOKEN = re.compile(r"[a-z0-9]+")


def _run_json(command: list[str], env: dict[str, str]) -> dict:
    print("$", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"command failed with exit code {done.returncode}: {' '.join(command)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def bm25_baseline(kb_path: Path, queries_path: Path, *, with_answers: bool) -> dict:
    """Top-1 accuracy, recall@5 and MRR@10 of BM25 over KB rows, best row per FAQ id."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    rows = _rows(kb_path)
    docs = [_tokens(r["question"] + (" " + r["answer"] if with_answers else "")) for r in rows]
    owners = [r["id"] for r in rows]
    bm25 = BM25Okapi(docs)
    queries = [q for q in _rows(queries_path) if q["expected_id"].strip()]
    top1 = recall5 = 0
    reciprocal = 0.0
    started = time.perf_counter()
    for query in queries:
        scores = bm25.get_scores(_tokens(query["query"]))
        best: dict[str, float] = defaultdict(lambda: -np.inf)
        for owner, score in zip(owners, scores, strict=True):
            best[owner] = max(best[owner], float(score))
        ranked = sorted(best, key=best.__getitem__, reverse=True)[:10]
        expected = query["expected_id"].strip()
        top1 += ranked[0] == expected
        recall5 += expected in ranked[:5]
        if expected in ranked:
            reciprocal += 1 / (ranked.index(expected) + 1)
    n = len(queries)
    return {
        "n_in_scope": n,
        "top1_accuracy": round(top1 / n, 4),
        "recall_at_5": round(recall5 / n, 4),
        "mrr": round(reciprocal / n, 4),
        "oos_recall": 0.0,
        "ms_per_query": round((time.perf_counter() - started) * 1000 / n, 3),
        "documents": "question + answer" if with_answers else "question",
    }


def _summary_of(bot_dir: Path) -> dict:
    """The build summary of an existing bot directory (as `qa build` prints it)."""
    state = json.loads((bot_dir / "state.json").read_text(encoding="utf-8"))
    doc = json.loads(
        (bot_dir / "versions" / state["current"] / "bot.json").read_text(encoding="utf-8")
    )
    calibration = doc["calibration"]
    return {
        "bot_dir": str(bot_dir),
        "version": state["current"],
        "reused": True,
        **doc["info"]["stats"],
        "calibration": {
            "source": calibration["source"],
            "method": calibration["method"],
            "threshold": round(calibration["threshold"], 4),
            **calibration["stats"],
        },
    }


def run_dataset(
    name: str, folder: Path, extra_build: list[str], bot_dir: Path, env: dict[str, str]
) -> dict:
    spec = DATASETS[name]
    kb, queries = folder / "kb.csv", folder / "dev_queries.csv"
    tf = threefold_command()
    started = time.perf_counter()
    if (bot_dir / "state.json").is_file():
        built = _summary_of(bot_dir)
    else:
        build = [*tf, "qa", "build", "--kb", str(kb), "--out", str(bot_dir), *extra_build]
        if spec["oos"]:
            build += ["--oos", str(folder / spec["oos"])]
        built = _run_json(build, env)
    build_s = time.perf_counter() - started
    evaluated = _run_json(
        [*tf, "qa", "eval", "--bot", str(bot_dir), "--queries", str(queries)], env
    )
    no_abstain = _run_json(
        [*tf, "qa", "eval", "--bot", str(bot_dir), "--queries", str(queries),
         "--threshold", "0", "--ambiguity-margin", "0"],
        env,
    )  # fmt: skip
    return {
        "kb": str(kb),
        "queries": str(queries),
        "build": {**built, "wall_seconds": round(build_s, 1)},
        "bot": evaluated,
        "bot_top1_no_abstention": no_abstain["in_scope_accuracy"],
        "bm25": bm25_baseline(kb, queries, with_answers=spec["bm25_answers"]),
        "threshold_sweep": threshold_sweep(bot_dir, queries),
    }


def threshold_sweep(bot_dir: Path, queries_path: Path) -> list[dict]:
    """In-scope accuracy / OOS recall / overall accuracy as the answer threshold varies.

    Batched retrieval once, then the policy at each threshold (ambiguity margin as built): the
    operating curve around the calibrated point, for choosing an override. Not used to set it.
    """
    from threefold.apps.qa.evaluation import read_queries
    from threefold.apps.qa.policy import decide
    from threefold.apps.qa.store import BotStore

    bot = BotStore(bot_dir).load()
    labeled = read_queries(queries_path)
    results = bot.retrieve_many([q.query for q in labeled], k=10)
    calibrated = round(bot.calibrator.threshold, 4)
    rows = []
    for threshold in sorted({calibrated, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}):
        settings = bot.policy_settings(threshold=threshold)
        right = oos_abstained = n_in = n_oos = 0
        for item, result in zip(labeled, results, strict=True):
            decision = decide(
                confidence=result.confidence,
                margin=result.ranking.margin,
                confidence_if_clear=result.confidence_if_clear,
                settings=settings,
            )
            answered = decision.outcome == "answer"
            if item.expected_id is None:
                n_oos += 1
                oos_abstained += not answered
            else:
                n_in += 1
                right += answered and result.ranking.top.faq_id == item.expected_id
        rows.append(
            {
                "threshold": threshold,
                "calibrated": threshold == calibrated,
                "in_scope_accuracy": round(right / n_in, 4),
                "oos_recall": round(oos_abstained / n_oos, 4) if n_oos else None,
                "overall_accuracy": round((right + oos_abstained) / len(labeled), 4),
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the faq/ data folder")
    parser.add_argument("--datasets", default="clinc150,stackfaq")
    parser.add_argument(
        "--fine-tune-steps",
        type=int,
        default=None,
        help="fine-tune the embedder for this many steps (default: no)",
    )
    parser.add_argument(
        "--bots",
        type=Path,
        default=None,
        help="keep built bots in DIR/<dataset> and reuse them (default: temporary)",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the commands")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        sys.exit(f"unknown dataset(s) {unknown}; expected some of {sorted(DATASETS)}")
    missing = [n for n in names if not (args.data / n / "kb.csv").is_file()]
    if missing:
        sys.exit(f"benchmark data not found: {missing} under {args.data}. Pass --data DIR.")
    extra = []
    if args.fine_tune_steps:
        extra = ["--fine-tune", "--fine-tune-steps", str(args.fine_tune_steps)]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before torch is imported
    started = datetime.now(timezone.utc)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        bots = args.bots or Path(tmp)
        results = {
            name: run_dataset(name, args.data / name, extra, bots / name, env) for name in names
        }
    report = {
        "benchmark": "qa_faq",
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "note": "CPU shared with other jobs while measured: latencies are upper bounds",
            "omp_num_threads": args.threads,
        },
        "model": "all-MiniLM-L6-v2 (packaged)" + (" fine-tuned" if extra else ""),
        "datasets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        "| dataset | split | queries | in-scope acc | OOS recall | overall acc | top-1 (no "
        "abstain) | MRR | R@5 | BM25 top-1 | BM25 MRR | p50 / p95 ms |"
    )
    print("|" + " --- |" * 12)
    for name, result in results.items():
        bot, bm25 = result["bot"], result["bm25"]
        print(
            f"| {name} | dev_queries.csv | {bot['n']} | {_fmt(bot['in_scope_accuracy'])} | "
            f"{_fmt(bot['oos_recall'])} | {_fmt(bot['overall_accuracy'])} | "
            f"{_fmt(result['bot_top1_no_abstention'])} | {_fmt(bot['mrr'])} | "
            f"{_fmt(bot['recall_at_5'])} | {_fmt(bm25['top1_accuracy'])} | {_fmt(bm25['mrr'])} | "
            f"{bot['latency_ms']['p50']:.1f} / {bot['latency_ms']['p95']:.1f} |"
        )
    for name, result in results.items():
        curve = ", ".join(
            f"{r['threshold']}: {r['in_scope_accuracy']}/{r['oos_recall']}"
            for r in result["threshold_sweep"]
        )
        print(f"{name} threshold: in-scope acc/OOS recall -> {curve}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
