"""Benchmark: what the sequence ranker's sampled softmax (large catalogs) costs in quality.

    python -m bench.recs_sampled_softmax [--data DIR] [--negatives 128 512] [--seeds 13 14]
        [--sequence-seconds 600] [--threads 2]

From `SequenceSettings.sampled_softmax_from` trained items (20,000) each training batch scores
its targets against the batch's own targets plus `sampled_negatives` (8,192) uniform draws instead
of every item (`sequence_training._sampled_softmax_loss`). MovieLens-100k has 1,682 items, so
here the sample is forced on and sized to the same share of the catalog: 8,192 of 100,000
items is ~8 %, ~135 of MovieLens' items. Split: the evaluation's leave-last-out; the
text-aware sequence ranker (frozen MiniLM item vectors, as `recs_cold_start` trains it) with
the full softmax (the baseline) and with each sample size, same seeds; all unseen items ranked
on the test item. Reports ndcg@10 / hr@10, seconds per epoch and the best epoch. Writes
bench/results/recs_sampled_softmax.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from bench.machine import BenchRun
from bench.recs_data import DEFAULT_DATA, load_recs_data
from bench.seeds import mean_and_spread

RESULTS = Path(__file__).resolve().parent / "results" / "recs_sampled_softmax.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with items.csv")
    parser.add_argument("--negatives", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14])
    parser.add_argument("--sequence-seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog, events = load_recs_data(args.data)
    import torch

    from threefold.apps.recs.evaluation import leave_last_out
    from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
    from threefold.apps.recs.sequence_training import (
        SequenceSettings,
        ordered_positions,
        train_sequence_model,
    )
    from threefold.core.embedder import Embedder

    torch.set_num_threads(args.threads)
    run = BenchRun()
    split = leave_last_out(catalog, events)
    vectors = Embedder(max_length=64).load().encode([item.text for item in split.items])
    ordered = ordered_positions(split.train, split.position)
    histories = [ordered.get(u, []) for u in split.users]
    variants: dict[str, int | None] = {"full_softmax": None}
    variants.update({f"sampled_{n}": n for n in args.negatives})
    runs = []
    for seed in args.seeds:
        for name, negatives in variants.items():
            settings = SequenceSettings(
                k=args.k, seed=seed, max_seconds=args.sequence_seconds, threads=args.threads
            )
            if negatives:  # from the first trained item: a sample on any catalog
                settings = dataclasses.replace(
                    settings, sampled_softmax_from=1, sampled_negatives=negatives
                )
            begun = time.perf_counter()
            model = train_sequence_model(split.item_ids, vectors, split.train, settings=settings)
            seconds = time.perf_counter() - begun
            scores = model.scores(histories, vectors, split.item_ids)
            result = summarize(rank_of_targets(scores, split.seen, split.targets), args.k)
            runs.append(
                {
                    "variant": name,
                    "negatives": negatives,
                    "seed": seed,
                    **result,
                    "best_epoch": model.info["best_epoch"],
                    "epochs_run": model.info["epochs_run"],
                    "seconds_per_epoch": round(
                        model.info["train_seconds"] / max(model.info["epochs_run"], 1), 2
                    ),
                    "train_seconds": round(seconds, 1),
                }
            )
            logging.info("%s", runs[-1])
    summary = []
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        row: dict[str, object] = {"variant": name, "negatives": variants[name]}
        for key in (f"ndcg@{args.k}", f"hr@{args.k}", "seconds_per_epoch"):
            row.update(mean_and_spread(key, [r[key] for r in mine]))
        summary.append(row)
    report = {
        "benchmark": "recs_sampled_softmax",
        "dataset": str(args.data),
        "split": "leave-last-out per user, all unseen items ranked on the test item",
        "model": "text-aware sequence ranker (frozen MiniLM item vectors + ID rows), alone",
        "items": len(split.items),
        "seeds": args.seeds,
        "baseline": "full_softmax (every trained item, what catalogs under 20,000 items train on)",
        "summary": summary,
        "runs": runs,
    }
    run.write(report, args.out, "bench.recs_sampled_softmax", argv or sys.argv[1:], args.threads)
    for row in summary:
        print(f"| {row['variant']} | {row[f'ndcg@{args.k}']:.4f} | {row['seconds_per_epoch']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
