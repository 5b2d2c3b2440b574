"""Benchmark: threefold recs vs its peers on MovieLens-100k, one split, one run.

    python -m bench.recs_movielens [--data DIR] [--sequence-seconds S] [--no-fine-tune]

Split (the `threefold recs eval` contract): per user the last new item by time is the test
item, all items the user has not interacted with are ranked. Every peer is fitted on the same
training events and tuned on each user's last training item (validation), never the test one.
Peers: popularity, item-kNN, text similarity (from `evaluate`), first-order Markov chain, EASE
(lambda tuned), implicit ALS (factors tuned) and BPR, plain SASRec (the sequence ranker's own
code with text off: ID-only) and, as the control for ensembling alone, two such SASRecs (seeds
S and S+1, trained side by side in two processes) averaged like threefold's sequence ensemble.
Ablations: the fused model with its text or sequence features switched off, and its sequence
ranker alone (by default the ensemble of the text-aware ranker and ID-only SASRec). Writes
bench/results/recs_movielens.json and prints one Markdown row per method:

| method | ndcg@10 | hr@10 | mrr | train s |
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import BenchRun
from bench.recs_data import DEFAULT_DATA, load_recs_data
from bench.recs_peers import Validation, fit_ease, fit_implicit, fit_markov, tune

RESULTS = Path(__file__).resolve().parent / "results" / "recs_movielens.json"


def train_id_only_sasrec(folder: Path, item_ids, events, settings) -> Path:
    """Plain SASRec (the sequence ranker with text off), refit included, saved to `folder`;
    its wall time is `info["seconds"]`."""
    from threefold.apps.recs.sequence_model import SequenceConfig
    from threefold.apps.recs.sequence_training import train_sequence_model

    begun = time.perf_counter()
    zeros = np.zeros((len(item_ids), 1), dtype=np.float32)
    model = train_sequence_model(
        item_ids,
        zeros,
        events,
        config=SequenceConfig(text_dimension=1, use_text=False),
        settings=settings,
    )
    model.info["seconds"] = round(time.perf_counter() - begun, 2)
    model.save(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with items.csv")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--sequence-seconds", type=float, default=480.0)
    parser.add_argument("--no-fine-tune", action="store_true")
    parser.add_argument("--no-implicit", action="store_true", help="skip the ALS/BPR peers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog, events = load_recs_data(args.data)
    import torch

    from threefold.apps.recs.evaluation import evaluate, leave_last_out
    from threefold.apps.recs.ranker_training import RankerSettings
    from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
    from threefold.apps.recs.sequence_ensemble import SequenceEnsemble
    from threefold.apps.recs.sequence_model import SequenceModel
    from threefold.apps.recs.sequence_training import SequenceSettings, ordered_positions
    from threefold.core.worker_processes import cpu_count, run_in_processes

    torch.set_num_threads(args.threads)
    run = BenchRun()
    settings = RankerSettings(
        k=args.k,
        max_steps=args.max_steps,
        fine_tune=not args.no_fine_tune,
        sequence_seconds=args.sequence_seconds,
        seed=args.seed,
    )
    result = evaluate(catalog, events, k=args.k, settings=settings)

    split = leave_last_out(catalog, events)
    validation = Validation(split, args.k)
    ordered = ordered_positions(split.train, split.position)
    test_histories = [ordered[u] for u in split.users]

    def measure(scores: np.ndarray) -> dict[str, float]:
        return summarize(rank_of_targets(scores, split.seen, split.targets), args.k)

    peers: dict[str, dict[str, Any]] = {}

    def run_peer(name: str, grid: list[float], fit, note: str) -> None:
        begun = time.perf_counter()
        best, tried = tune(validation, grid, fit)
        scorer = fit(validation.full_matrix, best)
        scores = scorer(validation.full_matrix, test_histories)
        peers[name] = {
            **measure(scores),
            "train_seconds": round(time.perf_counter() - begun, 2),
            "tuned": {
                "value": best,
                "validation_ndcg": {str(v): round(n, 4) for v, n in tried.items()},
            },
            "note": note,
        }
        logging.info("peer %s: %s", name, peers[name])

    def markov(matrix: np.ndarray, smoothing: float):
        histories = validation.inputs if matrix is validation.matrix else test_histories
        return fit_markov(matrix, smoothing, sequences=histories)

    markov.__name__ = "markov"
    run_peer("markov", [0.0, 1.0, 10.0], markov, "first-order transition counts + popularity")
    run_peer("ease", [50.0, 200.0, 500.0, 1000.0], fit_ease, "closed form, lambda tuned")
    if not args.no_implicit:

        def als(matrix: np.ndarray, factors: float):
            return fit_implicit(matrix, factors, kind="als", seed=args.seed)

        def bpr(matrix: np.ndarray, factors: float):
            return fit_implicit(matrix, factors, kind="bpr", seed=args.seed)

        run_peer("implicit_als", [32.0, 64.0, 128.0], als, "implicit 0.7 ALS, factors tuned")
        run_peer("implicit_bpr", [64.0], bpr, "implicit 0.7 BPR, 200 iterations")

    zeros = np.zeros((len(split.items), 1), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="bench-sasrec-") as scratch:
        calls = [
            (
                Path(scratch) / f"seed-{seed}",
                split.item_ids,
                split.train,
                SequenceSettings(
                    k=args.k,
                    seed=seed,
                    max_seconds=args.sequence_seconds,
                    threads=max(1, args.threads // 2),  # two side by side
                ),
            )
            for seed in (args.seed, args.seed + 1)
        ]  # one process each: each seeds its own RNGs, so the same models as one after the other
        folders = run_in_processes(train_id_only_sasrec, calls, processes=cpu_count())
        sasrecs = [SequenceModel.load(folder) for folder in folders]
    sasrec = sasrecs[0]
    peers["sasrec_id_only"] = {
        **measure(sasrec.scores(test_histories, zeros, split.item_ids)),
        "train_seconds": sasrec.info["seconds"],
        "validation": sasrec.info["validation"],
        "best_epoch": sasrec.info["best_epoch"],
        "note": "the sequence ranker with text off (ID embeddings only), full-softmax loss, "
        "same time budget and early stopping",
    }
    peers["sasrec_id_only_x2"] = {
        **measure(SequenceEnsemble(sasrecs).scores(test_histories, zeros, split.item_ids)),
        "train_seconds": round(sum(m.info["seconds"] for m in sasrecs), 2),  # side by side
        "seeds": [args.seed, args.seed + 1],
        "note": "two ID-only SASRecs (seeds above), log-probabilities averaged like threefold's "
        "sequence ensemble: the control for what ensembling alone gives",
    }
    for name in ("popularity", "item_knn", "text_similarity"):
        peers[name] = result["baselines"][name]

    key = f"ndcg@{args.k}"
    strongest = max(peers, key=lambda name: peers[name][key])
    model = result["model"]
    report = {
        "benchmark": "recs_movielens",
        "dataset": str(args.data),
        "split": "leave-last-out per user (last new item by time hidden), all items the user "
        "has not interacted with ranked; every method tuned on each user's last training item",
        "seed": args.seed,
        "model": model,
        "peers": peers,
        "strongest_peer": strongest,
        "ratio_to_strongest_peer": round(model[key] / peers[strongest][key], 4),
        "goal": "ndcg@10 >= 1.10 x the strongest peer",
        "goal_met": model[key] >= 1.10 * peers[strongest][key],
        "evaluation": result,
    }
    run.write(report, args.out, "bench.recs_movielens", argv or sys.argv[1:], args.threads)
    rows = {"threefold recs (fused)": model, **result["ablation"], **peers}
    for name, metrics in rows.items():
        seconds = metrics.get("train_seconds")
        print(
            f"| {name} | {metrics[key]:.4f} | {metrics[f'hr@{args.k}']:.4f} "
            f"| {metrics['mrr']:.4f} | {'' if seconds is None else f'{seconds:.0f}'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
