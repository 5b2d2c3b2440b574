"""Benchmark: the QA bot's eval contract on CLINC150, banking77 and StackFAQ, with BM25.

    python -m bench.qa_faq [--data DIR] [--datasets clinc150,banking77,stackfaq]
                           [--fine-tune-steps N] [--bots DIR] [--threads 1]

Two bots per dataset in the same run: `intent` (the default build: intent head fused with
retrieval) and `retrieval` (`--no-intent-model`, the baseline), each with its build time.

CLINC150 and StackFAQ: `threefold qa build --kb DIR/<ds>/kb.csv --out BOT` (CLINC150 also gets
`--oos DIR/clinc150/oos_train.csv`: the official out-of-scope *training* examples as calibration
negatives) and `threefold qa eval --bot BOT --queries DIR/<ds>/dev_queries.csv`, once with the
bot's calibrated threshold and once answering everything (`--threshold 0 --ambiguity-margin 0`,
the top-1 accuracy comparable to a baseline without abstention). `--bots DIR` keeps the bots in
DIR/<dataset>-<bot> and reuses them on the next run.

banking77 has no query file: 5-fold cross-validation over kb.csv (stratified by id; a fold's
rows are the queries, the other rows the KB), in process, every text embedded once and reused
by the folds' builds (so its build times leave out embedding). Peers in the same run and folds:
logistic regression on the frozen sentence embeddings of the default base and of every
`--peer-base DIR` (e.g. all-mpnet-base-v2 from `threefold models fetch-base`), C=10 (C=1
over-regularizes 77 classes: 0.898 vs 0.918 on fold 0; 10 and 100 within 0.1 point).

The BM25 baseline (rank-bm25, Okapi, lower-cased word tokens; StackFAQ indexes question + answer
as in the reference) ranks the same KB in the same run; it never abstains. The commands run with
OMP_NUM_THREADS=--threads (default 1): on a CPU shared with other jobs, intra-op threads made
single-query encoding ~10x slower. Writes bench/results/qa_faq.json and prints Markdown rows.
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
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bench.commands import threefold_command

DEFAULT_DATA = Path("/work/shared/data/faq")
RESULTS = Path(__file__).resolve().parent / "results" / "qa_faq.json"
DATASETS = {
    "clinc150": {"oos": "oos_train.csv", "bm25_answers": False},
    "banking77": {"oos": None, "bm25_answers": False, "folds": 5},
    "stackfaq": {"oos": None, "bm25_answers": True},
}
BOTS = {"intent": [], "retrieval": ["--no-intent-model"]}
DEFAULT_BASE = "all-MiniLM-L6-v2 (packaged)"
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
    return bm25_rows(_rows(kb_path), _rows(queries_path), with_answers=with_answers)


def bm25_rows(rows: list[dict], query_rows: list[dict], *, with_answers: bool) -> dict:
    """`bm25_baseline` on rows already read (id, question, answer / query, expected_id)."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    docs = [_tokens(r["question"] + (" " + r["answer"] if with_answers else "")) for r in rows]
    owners = [r["id"] for r in rows]
    bm25 = BM25Okapi(docs)
    queries = [q for q in query_rows if q["expected_id"].strip()]
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
    name: str, folder: Path, extra_build: list[str], bots: Path, env: dict[str, str]
) -> dict:
    """Both bots and BM25 on one dataset with a query file."""
    spec = DATASETS[name]
    kb, queries = folder / "kb.csv", folder / "dev_queries.csv"
    return {
        "kb": str(kb),
        "queries": str(queries),
        "bots": {
            bot: run_bot(name, folder, [*extra_build, *flags], bots / f"{name}-{bot}", env)
            for bot, flags in BOTS.items()
        },
        "bm25": bm25_baseline(kb, queries, with_answers=spec["bm25_answers"]),
    }


def run_bot(
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
        "build": {**built, "wall_seconds": round(build_s, 1)},
        "bot": evaluated,
        "bot_top1_no_abstention": no_abstain["in_scope_accuracy"],
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
    calibrated = round(bot.threshold, 4)
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


class _CachedEncoder:
    """An Embedder whose vectors are computed once per text (the CV folds share them)."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.cache: dict[str, object] = {}

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)

    def encode(self, texts, *, batch_size=None, show_progress=False):
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            vectors = self.embedder.encode(missing, batch_size=batch_size or 64)
            self.cache.update(zip(missing, vectors, strict=True))
        return np.vstack([self.cache[t] for t in texts]).astype(np.float32)


PEER_C = 10.0


def logistic_peer_top1(encoder, train: list[dict], test: list[dict], labels: list[str]) -> float:
    """Top-1 of multinomial logistic regression (C=PEER_C) on the encoder's frozen vectors."""
    import torch

    from threefold.core.small_data import fit_logistic_head

    column = {label: i for i, label in enumerate(labels)}
    head = fit_logistic_head(
        torch.from_numpy(encoder.encode([r["question"] for r in train])),
        torch.tensor([column[r["id"]] for r in train]),
        len(labels),
        inverse_regularization=PEER_C,
    )
    with torch.no_grad():
        guess = head(torch.from_numpy(encoder.encode([r["question"] for r in test]))).argmax(1)
    return sum(labels[g] == r["id"] for g, r in zip(guess.tolist(), test, strict=True)) / len(test)


def run_cross_validation(
    name: str, folder: Path, folds: int, seed: int = 13, peer_bases: Sequence[Path] = ()
) -> dict:
    """k-fold CV over kb.csv: both bots (built in process), BM25 and frozen-embedding peers."""
    import random

    from threefold.apps.qa.builder import BuildOptions, build_bot
    from threefold.apps.qa.evaluation import LabeledQuery, evaluate
    from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
    from threefold.core.embedder import Embedder

    rows = _rows(folder / "kb.csv")
    by_id: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_id[row["id"]].append(i)
    rng = random.Random(seed)
    fold_of = [0] * len(rows)
    for members in by_id.values():
        rng.shuffle(members)
        for position, i in enumerate(members):
            fold_of[i] = position % folds
    encoder = _CachedEncoder(Embedder().load())
    started = time.perf_counter()
    encoder.encode([r["question"] for r in rows] + sorted({r["answer"] for r in rows}))
    embed_seconds = time.perf_counter() - started
    peer_encoders = {DEFAULT_BASE: encoder}
    for base in peer_bases:
        peer_encoders[str(base)] = _CachedEncoder(Embedder(str(base)).load())
    labels = sorted(by_id)
    per_bot: dict[str, list[dict]] = {bot: [] for bot in BOTS}
    peers: dict[str, list[float]] = {base: [] for base in peer_encoders}
    bm25 = []
    for fold in range(folds):
        train = [r for r, f in zip(rows, fold_of, strict=True) if f != fold]
        test = [r for r, f in zip(rows, fold_of, strict=True) if f == fold]
        grouped: dict[str, dict] = {}
        for r in train:
            grouped.setdefault(r["id"], {"id": r["id"], "questions": [], "answer": r["answer"]})
            grouped[r["id"]]["questions"].append(r["question"])
        kb = KnowledgeBase(entry_from_mapping(g) for g in grouped.values())
        queries = [LabeledQuery(r["question"], r["id"]) for r in test]
        for bot_name in BOTS:
            built_at = time.perf_counter()
            bot = build_bot(kb, encoder, BuildOptions(intent_model=bot_name == "intent"))
            build_seconds = time.perf_counter() - built_at
            scored = evaluate(bot, queries)
            top1 = evaluate(
                bot, queries, settings=bot.policy_settings(threshold=0.0, ambiguity_margin=0.0)
            )
            per_bot[bot_name].append(
                {"fold": fold, "build_seconds": round(build_seconds, 1), "eval": scored,
                 "top1": top1["in_scope_accuracy"]}
            )  # fmt: skip
            print(f"{name} fold {fold} {bot_name}: top-1 {top1['in_scope_accuracy']}",
                  file=sys.stderr, flush=True)  # fmt: skip
        bm25.append(
            bm25_rows(train, [{"query": r["question"], "expected_id": r["id"]} for r in test],
                      with_answers=False)
        )  # fmt: skip
        for base, peer_encoder in peer_encoders.items():
            peers[base].append(round(logistic_peer_top1(peer_encoder, train, test, labels), 4))
            print(f"{name} fold {fold} peer {base}: top-1 {peers[base][-1]}",
                  file=sys.stderr, flush=True)  # fmt: skip

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4)

    return {
        "kb": str(folder / "kb.csv"),
        "queries": f"{folds}-fold cross-validation over kb.csv (stratified by id)",
        "embed_all_seconds": round(embed_seconds, 1),
        "bots": {
            bot: {
                "top1_mean": mean([f["top1"] for f in fs]),
                "in_scope_accuracy_mean": mean([f["eval"]["in_scope_accuracy"] for f in fs]),
                "mrr_mean": mean([f["eval"]["mrr"] for f in fs]),
                "build_seconds_mean": mean([f["build_seconds"] for f in fs]),
                "latency_p50_ms_mean": mean([f["eval"]["latency_ms"]["p50"] for f in fs]),
                "folds": fs,
            }
            for bot, fs in per_bot.items()
        },
        "bm25": {
            "top1_accuracy": mean([b["top1_accuracy"] for b in bm25]),
            "mrr": mean([b["mrr"] for b in bm25]),
        },
        "peers": [
            {
                "method": f"logistic regression (C={PEER_C:g}) on frozen embeddings",
                "base": base,
                "top1_per_fold": top1s,
                "top1_mean": mean(top1s),
            }
            for base, top1s in peers.items()
        ],
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the faq/ data folder")
    parser.add_argument("--datasets", default="clinc150,banking77,stackfaq")
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
    parser.add_argument(
        "--peer-base",
        type=Path,
        action="append",
        default=[],
        help="banking77: also a logistic-regression peer on this base's frozen embeddings",
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
        results: dict[str, dict] = {}
        for name in names:
            folds = DATASETS[name].get("folds")
            results[name] = (
                run_cross_validation(name, args.data / name, folds, peer_bases=args.peer_base)
                if folds
                else run_dataset(name, args.data / name, extra, bots, env)
            )
            _write_report(args, started, extra, results)  # after each dataset: partial runs count
    print_rows(results)
    return 0


def _write_report(args, started: datetime, extra: list[str], results: dict) -> None:
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
        "model": DEFAULT_BASE + (" fine-tuned" if extra else ""),
        "command": "python -m bench.qa_faq " + " ".join(sys.argv[1:]),
        "datasets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")


def print_rows(results: dict) -> None:
    """The Markdown rows of the README table."""
    print(
        "| dataset | bot | queries | in-scope acc | OOS recall | top-1 (no abstain) | MRR | "
        "BM25 top-1 | BM25 MRR | build s | p50 / p95 ms |"
    )
    print("|" + " --- |" * 11)
    for name, result in results.items():
        bm25 = result["bm25"]
        for bot_name, run in result["bots"].items():
            if "folds" in run:  # cross-validation
                print(
                    f"| {name} (5-fold CV) | {bot_name} | {result['queries']} | "
                    f"{_fmt(run['in_scope_accuracy_mean'])} | – | {_fmt(run['top1_mean'])} | "
                    f"{_fmt(run['mrr_mean'])} | {_fmt(bm25['top1_accuracy'])} | "
                    f"{_fmt(bm25['mrr'])} | {run['build_seconds_mean']:.0f} | "
                    f"{run['latency_p50_ms_mean']:.1f} / – |"
                )
                continue
            bot = run["bot"]
            print(
                f"| {name} | {bot_name} | {bot['n']} | {_fmt(bot['in_scope_accuracy'])} | "
                f"{_fmt(bot['oos_recall'])} | {_fmt(run['bot_top1_no_abstention'])} | "
                f"{_fmt(bot['mrr'])} | {_fmt(bm25['top1_accuracy'])} | {_fmt(bm25['mrr'])} | "
                f"{run['build'].get('build_seconds', 0):.0f} | "
                f"{bot['latency_ms']['p50']:.1f} / {bot['latency_ms']['p95']:.1f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
