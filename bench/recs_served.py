"""Benchmark: does the API serve what the benchmark measures? MovieLens-100k, one model.

    python -m bench.recs_served [--data DIR] [--model DIR] [--sequence-seconds S]

`bench/recs_movielens.py` scores the fused ranker over every unseen item. The API
(`Recommender.recommend`) scores only a candidate pool (FAISS neighbours of the profile,
co-occurring items, the sequence ranker's best next items, trending and popular ones), with the
serving defaults (fp32 query vectors below 20,000 items, the model's co-occurrence
neighbours). Same split (per
user the last new item by time is the test item), same trained model (`--model`, a folder from
`threefold recs build`, or trained here with the build defaults on the training events):
- all items: the model's ranking of every unseen item (the `recs eval` figure);
- served: the list `GET /api/recommendations` would return (k=10), from the same model;
- served without the sequence candidates: the pool as it was before they were added;
- served with 200 co-occurrence neighbours per item (what the API kept before it took the
  model's own setting, all of them by default) and with int8 query vectors (the default at any
  catalog size before it became fp32 below 20,000 items);
- served as before these changes (no sequence candidates, 200 neighbours, int8 queries);
and, for the served rows, the share of the all-items top 10 that the candidate pool holds.
Writes bench/results/recs_served.json and prints one Markdown row per variant:

| variant | ndcg@10 | hr@10 | top-10 in pool |
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import BenchRun
from bench.recs_data import DEFAULT_DATA, load_recs_data

RESULTS = Path(__file__).resolve().parent / "results" / "recs_served.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with items.csv")
    parser.add_argument("--model", type=Path, help="a `recs build` folder (default: train one)")
    parser.add_argument("--save-model", type=Path, help="where to keep the model trained here")
    parser.add_argument("--sequence-seconds", type=float, default=480.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog, events = load_recs_data(args.data)
    import torch

    from threefold.apps.recs import recommender as serving
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.evaluation import feature_tensor, leave_last_out
    from threefold.apps.recs.ranker_store import RankerModel
    from threefold.apps.recs.ranker_training import RankerSettings, train_ranker
    from threefold.apps.recs.ranking_features import quantize_queries_for
    from threefold.apps.recs.ranking_scores import rank_of_targets, summarize

    torch.set_num_threads(args.threads)
    run = BenchRun()
    split = leave_last_out(catalog, events)
    train_seconds = None
    if args.model:
        model = RankerModel.load(args.model)
    else:
        begun = time.perf_counter()
        model = train_ranker(
            split.items,
            split.train,
            settings=RankerSettings(
                k=args.k, sequence_seconds=args.sequence_seconds, seed=args.seed
            ),
        )
        train_seconds = round(time.perf_counter() - begun, 1)
        if args.save_model:
            model.save(args.save_model)
    tensor = feature_tensor(model, split)
    full_scores = model.combiner.score(tensor)
    full = summarize(rank_of_targets(full_scores, split.seen, split.targets), args.k)
    top_full = np.argsort(-np.where(split.seen, -np.inf, full_scores), axis=1)[:, : args.k]
    defaults = RecsConfig()
    original = serving.generate_candidates
    pools: list[set[int]] = []

    def recording(**kwargs):
        chosen = original(**kwargs)
        pools.append(set(chosen.tolist()))
        return chosen

    def without_sequence(**kwargs):
        return recording(**{**kwargs, "sequence": None})

    # as `threefold serve recs` opens a model folder (resources.index_ranker)
    served = {"quantize_queries": defaults.quantize_queries, "neighbours": model.neighbours}
    variants = {"all_items": {**full, "users": len(split.users)}}
    for name, generate, options in (
        ("served", recording, served),
        ("served_without_sequence_candidates", without_sequence, served),
        (
            "served_200_cooccurrence_neighbours",
            recording,
            {**served, "neighbours": serving.DEFAULT_NEIGHBOURS},
        ),
        ("served_int8_queries", recording, {**served, "quantize_queries": True}),
        (
            "served_before",
            without_sequence,
            {**served, "neighbours": serving.DEFAULT_NEIGHBOURS, "quantize_queries": True},
        ),
    ):
        recommender = serving.Recommender.for_ranker(
            catalog, model, split.train, candidate_pool=defaults.candidate_pool, **options
        )
        recommender.build()
        serving.generate_candidates = generate
        pools.clear()
        begun = time.perf_counter()
        ranks = []
        for row, user in enumerate(split.users):
            listed = recommender.recommend(user, split.histories[user], k=args.k)
            ids = [r.item.item_id for r in listed.items]
            target = split.items[split.targets[row]].item_id
            ranks.append(ids.index(target) + 1 if target in ids else args.k + 1)
        serving.generate_candidates = original
        in_pool = np.mean(
            [len(set(top_full[r].tolist()) & pools[r]) / args.k for r in range(len(split.users))]
        )
        measured = summarize(np.array(ranks, dtype=np.float64), args.k)
        measured.pop("mrr")  # a list of k holds no rank beyond k
        variants[name] = {
            **measured,
            "top_k_in_pool": round(float(in_pool), 4),
            "mean_pool": round(float(np.mean([len(p) for p in pools])), 1),
            "seconds_per_request": round((time.perf_counter() - begun) / len(split.users), 4),
            "users": len(split.users),
            "options": options,
        }
        logging.info("%s: %s", name, variants[name])
    report = {
        "benchmark": "recs_served",
        "dataset": str(args.data),
        "split": "leave-last-out per user (the recs eval split); all items vs the served list",
        "model": str(args.model) if args.model else "trained here (recs build defaults)",
        "train_seconds": train_seconds,
        "sequence_seconds": args.sequence_seconds,
        "seed": args.seed,
        "k": args.k,
        "candidate_pool": defaults.candidate_pool,
        "served_query_vectors": "int8"
        if quantize_queries_for(defaults.quantize_queries, len(catalog))
        else "fp32",
        "variants": variants,
    }
    run.write(report, args.out, "bench.recs_served", argv or sys.argv[1:], args.threads)
    k = args.k
    for name, result in variants.items():
        pool = result.get("top_k_in_pool")
        print(
            f"| {name} | {result[f'ndcg@{k}']:.4f} | {result[f'hr@{k}']:.4f} "
            f"| {'-' if pool is None else f'{pool:.3f}'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
