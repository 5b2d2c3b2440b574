"""Benchmark: `recs build` (the ranker's training) and its model's serving on a large catalog.

    python -m bench.recs_build_scale [--items 30000] [--users 3000] [--seed 0]
        [--sequence-seconds 60] [--max-steps 5] [--requests 200] [--out FILE]

What `threefold recs build` does, in this process: `train_ranker` on a synthetic catalog and
event log (bench/recs_scale's topics, titles and browsing users: real text through the real
encoder, so the fine-tune and the catalog embedding are what a user's build pays), then a
`Recommender` over the trained model (statistics, index, the sequence ranker's item table; the
catalog vectors from the build, as the API takes them from the model folder) and
`recommend` for `--requests` users with a history, one torch thread, as one API worker would.
Reported: wall seconds of the build and of the recommender's setup, how many items the
sequence ranker trained on and whether that took the sampled softmax (`sampled_softmax_from`),
peak RSS of this process and of its children (the sequence ensemble's members train in their
own processes), how many validation users the combiner was fitted on, p50/p99 of one
recommendation. The point is memory and time that stay bounded as the catalog grows (the
combiner's user sample, sparse co-occurrence, blockwise validation, the sampled softmax), not
quality: the data are synthetic. Writes bench/results/recs_build_scale.json.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import BenchRun
from bench.recs_scale import TOPICS, synthetic_catalog, synthetic_events

RESULTS = Path(__file__).resolve().parent / "results" / "recs_build_scale.json"


def peak_rss_gib(who: int) -> float:
    """Peak resident memory of this process (RUSAGE_SELF) or its largest child, in GiB."""
    return round(resource.getrusage(who).ru_maxrss * 1024 / 2**30, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-seconds", type=float, default=60.0)
    parser.add_argument("--max-steps", type=int, default=5, help="text fine-tune steps")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from threefold.apps.recs.events import group_by_user
    from threefold.apps.recs.ranker_training import RankerSettings, train_ranker
    from threefold.apps.recs.recommender import Recommender
    from threefold.apps.recs.sequence_training import SequenceSettings

    run = BenchRun()
    topics = np.random.default_rng(args.seed).integers(0, TOPICS, args.items)
    catalog = synthetic_catalog(topics)
    events = synthetic_events(topics, args.users, seed=args.seed)
    settings = RankerSettings(
        max_steps=args.max_steps, sequence_seconds=args.sequence_seconds, seed=args.seed
    )
    begun = time.perf_counter()
    model = train_ranker(list(catalog), events, settings=settings)
    build_seconds = time.perf_counter() - begun

    members = getattr(model.sequence, "members", [model.sequence])
    trained_items = max((len(m.item_ids) for m in members if m is not None), default=0)
    torch.set_num_threads(1)  # one API worker's share of the machine
    begun = time.perf_counter()
    recommender = Recommender.for_ranker(catalog, model, events)
    # as the API starts from the model folder: the build's vectors of unchanged items
    computed = recommender.build(model.saved_vectors(catalog))
    setup_seconds = time.perf_counter() - begun
    histories = group_by_user(events)
    users = sorted(histories)[: args.requests]
    recommender.recommend(users[0], histories[users[0]], k=10)  # warm-up
    latencies = []
    for user in users:
        started = time.perf_counter()
        recommender.recommend(user, histories[user], k=10)
        latencies.append(time.perf_counter() - started)
    milliseconds = np.array(latencies) * 1000
    report = {
        "benchmark": "recs_build_scale",
        "data": {
            "items": args.items,
            "users": args.users,
            "events": len(events),
            "seed": args.seed,
            "description": "bench/recs_scale synthetic catalog and browsing users (titles "
            "'Synthetic item N', topic descriptions), embedded by the real encoder",
        },
        "settings": {"sequence_seconds": args.sequence_seconds, "max_steps": args.max_steps},
        "build": {
            "seconds": round(build_seconds, 1),
            "combiner_validation_users": model.info.get("validation", {}).get("users"),
            "validation_users": model.info.get("validation_users"),
            "sequence_trained_items": trained_items,
            "sequence_softmax": "sampled"
            if trained_items >= SequenceSettings().sampled_softmax_from
            else "full",
        },
        "serving": {
            "setup_seconds": round(setup_seconds, 1),
            "vectors_embedded_at_setup": len(computed),
            "requests": len(users),
            "torch_threads": 1,
            "recommend_ms": {
                "p50": round(float(np.percentile(milliseconds, 50)), 1),
                "p99": round(float(np.percentile(milliseconds, 99)), 1),
            },
        },
        "peak_rss_gib": {
            "process": peak_rss_gib(resource.RUSAGE_SELF),
            "largest_child": peak_rss_gib(resource.RUSAGE_CHILDREN),
        },
    }
    run.write(report, args.out, "bench.recs_build_scale", argv or sys.argv[1:], 1)
    print(
        f"{args.items} items: build {build_seconds:.0f} s, peak RSS "
        f"{report['peak_rss_gib']['process']} GiB, recommend p50/p99 "
        f"{report['serving']['recommend_ms']['p50']}/{report['serving']['recommend_ms']['p99']} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
