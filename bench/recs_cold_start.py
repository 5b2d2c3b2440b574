"""Benchmark: cold items and short histories on MovieLens-100k (the sequence ranker's text path).

    python -m bench.recs_cold_start [--data DIR] [--cold-share 0.2] [--sequence-seconds S]
        [--seeds 13 14 15]

Split: the evaluation's leave-last-out split; then a seeded `--cold-share` of the items is
removed from every training history (no ID embedding, no co-occurrence, no popularity for
them), so they can be scored only through their text.
- cold items: HR@10 / NDCG@10 over the users whose test item is a cold item;
- warm items: the same over the other users (does the text path cost warm users anything?);
- short histories: every user's input cut to the last 1-3 training items (all test items).
Methods: the fused ranker `threefold recs build` trains (fine-tuned text encoder, text-aware
sequence ranker and the other features in the tuned combiner: what the API serves), the
same with the API's new-item slot (the best item without interactions takes the 10th place),
the text-aware sequence ranker alone (text + IDs), plain SASRec (IDs only: a cold item has no
representation, so it cannot rank one), popularity. Each seed draws its own cold items and
trains every method anew; `methods` holds the mean over the seeds with each figure's min-max
(`*_spread`), `per_seed` the runs. Writes bench/results/recs_cold_start.json and prints one
Markdown row per method (means):

| method | cold HR@10 | cold NDCG@10 | warm NDCG@10 | 1-3 events HR@10 |
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import BenchRun
from bench.recs_data import DEFAULT_DATA, load_recs_data
from bench.seeds import mean_and_spread

RESULTS = Path(__file__).resolve().parent / "results" / "recs_cold_start.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with items.csv")
    parser.add_argument("--cold-share", type=float, default=0.2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sequence-seconds", type=float, default=300.0)
    parser.add_argument(
        "--id-dropout", type=float, default=0.25, help="share of ID rows dropped per batch"
    )
    parser.add_argument(
        "--no-fused", action="store_true", help="skip the fused ranker (the slowest to train)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog, events = load_recs_data(args.data)
    import torch

    torch.set_num_threads(args.threads)
    run = BenchRun()
    per_seed: dict[str, dict[str, dict[str, object]]] = {}
    for seed in args.seeds:
        per_seed[str(seed)], cold_items = run_seed(catalog, events, args, seed)
    methods = average(list(per_seed.values()))
    report = {
        "benchmark": "recs_cold_start",
        "dataset": str(args.data),
        "split": "leave-last-out per user; a seeded share of items removed from every training "
        "history (cold: text only); short histories = input cut to the last 1-3 items",
        "cold_share": args.cold_share,
        "id_dropout": args.id_dropout,
        "sequence_seconds": args.sequence_seconds,
        "cold_items": cold_items,
        "seeds": args.seeds,
        "methods": methods,
        "per_seed": per_seed,
    }
    run.write(report, args.out, "bench.recs_cold_start", argv or sys.argv[1:], args.threads)
    k = args.k
    for name, result in methods.items():
        c, w, s = result["cold_items"], result["warm_items"], result["short_histories"]
        print(
            f"| {name} | {c[f'hr@{k}']:.4f} | {c[f'ndcg@{k}']:.4f} | {w[f'ndcg@{k}']:.4f} "
            f"| {s[f'hr@{k}']:.4f} |"
        )
    return 0


def run_seed(
    catalog: object, events: list, args: argparse.Namespace, seed: int
) -> tuple[dict[str, dict[str, object]], int]:
    """Every method on one seed's cold items: (results by method, number of cold items)."""
    from threefold.apps.recs.evaluation import feature_tensor, leave_last_out
    from threefold.apps.recs.ranker_training import RankerSettings, train_ranker
    from threefold.apps.recs.ranking_features import SEQUENCE_COLUMN
    from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
    from threefold.apps.recs.rules import new_item_slot
    from threefold.apps.recs.sequence_model import SequenceConfig
    from threefold.apps.recs.sequence_training import (
        SequenceSettings,
        ordered_positions,
        train_sequence_model,
    )
    from threefold.core.embedder import Embedder

    split = leave_last_out(catalog, events)
    n = len(split.items)
    rng = np.random.default_rng(seed)
    cold = np.zeros(n, dtype=bool)
    cold[rng.choice(n, size=round(args.cold_share * n), replace=False)] = True
    cold_ids = {split.items[p].item_id for p in np.flatnonzero(cold)}
    train = [e for e in split.train if e.item_id not in cold_ids]
    ordered = ordered_positions(train, split.position)
    histories = [ordered.get(u, []) for u in split.users]
    has_history = np.array([len(h) > 0 for h in histories])
    cold_target = cold[split.targets] & has_history
    warm_target = ~cold[split.targets] & has_history
    short = [h[-(1 + row % 3) :] for row, h in enumerate(histories)]  # 1, 2 or 3 items
    short_seen = np.zeros_like(split.seen)
    for row, h in enumerate(short):
        short_seen[row, h] = True
    # the full training history (cold items included) stays excluded from the ranking
    seen = split.seen

    def measure(scores: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        ranks = rank_of_targets(scores[rows], mask[rows], split.targets[rows])
        return {**summarize(ranks, args.k), "users": int(rows.sum())}

    vectors = Embedder(max_length=64).load().encode([item.text for item in split.items])
    sequence_settings = SequenceSettings(
        k=args.k,
        seed=seed,
        max_seconds=args.sequence_seconds,
        threads=args.threads,
        id_dropout=args.id_dropout,
    )
    methods: dict[str, dict[str, object]] = {}
    for name, use_text in (("text_sequence_ranker", True), ("sasrec_id_only", False)):
        inputs = vectors if use_text else np.zeros((n, 1), dtype=np.float32)
        begun = time.perf_counter()
        model = train_sequence_model(
            split.item_ids,
            inputs,
            train,
            config=SequenceConfig(text_dimension=int(inputs.shape[1]), use_text=use_text),
            settings=sequence_settings,
        )
        full = model.scores(histories, inputs, split.item_ids)
        brief = model.scores(short, inputs, split.item_ids)
        methods[name] = {
            "cold_items": measure(full, cold_target, seen),
            "warm_items": measure(full, warm_target, seen),
            "short_histories": measure(brief, has_history, seen | short_seen),
            "train_seconds": round(time.perf_counter() - begun, 1),
            "best_epoch": model.info["best_epoch"],
        }
        logging.info("%s: %s", name, methods[name])
    if not args.no_fused:
        begun = time.perf_counter()
        model = train_ranker(
            split.items,
            train,
            settings=RankerSettings(k=args.k, sequence_seconds=args.sequence_seconds, seed=seed),
        )
        train_seconds = time.perf_counter() - begun
        kept = {
            u: [e for e in events if e.item_id not in cold_ids]
            for u, events in split.histories.items()
        }
        recent = {u: last_items(kept[u], 1 + row % 3) for row, u in enumerate(split.users)}
        full_tensor = feature_tensor(model, dataclasses.replace(split, train=train, histories=kept))
        brief_tensor = feature_tensor(
            model, dataclasses.replace(split, train=train, histories=recent)
        )
        full, brief = model.combiner.score(full_tensor), model.combiner.score(brief_tensor)
        methods["fused_ranker"] = {
            "cold_items": measure(full, cold_target, seen),
            "warm_items": measure(full, warm_target, seen),
            "short_histories": measure(brief, has_history, seen | short_seen),
            "train_seconds": round(train_seconds, 1),
            "weights": {name: round(w, 4) for name, w in model.combiner.weights.items()},
        }
        logging.info("fused_ranker: %s", methods["fused_ranker"])
        # the API's default: the best item without interactions takes the 10th place
        touched = np.zeros(n, dtype=bool)
        for positions in ordered.values():
            touched[positions] = True

        def slotted(scores: np.ndarray, tensor: np.ndarray, mask: np.ndarray) -> np.ndarray:
            preference = tensor[:, :, SEQUENCE_COLUMN]
            return new_item_slot(np.where(mask, -np.inf, scores), ~touched, preference, args.k)

        full, brief = (
            slotted(full, full_tensor, seen),
            slotted(brief, brief_tensor, seen | short_seen),
        )
        methods["fused_ranker_with_new_item_slot"] = {
            "cold_items": measure(full, cold_target, seen),
            "warm_items": measure(full, warm_target, seen),
            "short_histories": measure(brief, has_history, seen | short_seen),
            "new_items": int((~touched).sum()),
        }
        logging.info("with new-item slot: %s", methods["fused_ranker_with_new_item_slot"])
    counts = np.zeros(n, dtype=np.float32)
    for positions in ordered.values():
        counts[positions] += 1
    popularity = np.tile(np.log1p(counts), (len(split.users), 1))
    methods["popularity"] = {
        "cold_items": measure(popularity, cold_target, seen),
        "warm_items": measure(popularity, warm_target, seen),
        "short_histories": measure(popularity, has_history, seen | short_seen),
    }
    return methods, int(cold.sum())


def average(runs: list[dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    """The mean of each method's figures over the seeds, with `<figure>_spread` = [min, max]."""
    out: dict[str, dict[str, object]] = {}
    for name in runs[0]:
        entry: dict[str, object] = {}
        for part, value in runs[0][name].items():
            if isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                group: dict[str, object] = {}
                for key in value:
                    values = [run[name][part][key] for run in runs]  # type: ignore[index]
                    group.update(mean_and_spread(key, values))
                entry[part] = group
            elif isinstance(value, (int, float)):
                entry[part] = round(float(np.mean([run[name][part] for run in runs])), 1)
        out[name] = entry
    return out


def last_items(events: list, count: int) -> list:
    """The events of a user's last `count` distinct items, in order."""
    kept, items = [], set()
    for event in reversed(events):
        if event.item_id not in items:
            if len(items) == count:
                break
            items.add(event.item_id)
        kept.append(event)
    return kept[::-1]


if __name__ == "__main__":
    raise SystemExit(main())
