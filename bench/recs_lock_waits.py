"""Benchmark: how long a request waits while the recommender swaps its ranker or edits items.

    python -m bench.recs_lock_waits [--items 1000000] [--poll-ms 5]

Builds a `Recommender` over a synthetic catalog (random unit vectors, d=384, 20 categories, the
default index: IVF above 20,000 items; 50,000 view events), then, in a second thread, (1) swaps
in a new ranker (its vectors given, so nothing is embedded), (2) upserts one new item, (3) edits
one existing item. Meanwhile this thread calls `has_item` (which takes the recommender's lock,
as every request does) every `--poll-ms` ms and records how long each call took; the longest is
what a request waited. Writes bench/results/recs_lock_waits.json and prints Markdown rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.machine import load_average

RESULTS = Path(__file__).resolve().parent / "results" / "recs_lock_waits.json"


def longest_wait(action: Callable[[], object], probe: Callable[[], object], poll_s: float) -> dict:
    """Run `action` in a thread; time `probe` calls until it is done."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported below, in this thread
            failure.append(exc)
        finally:
            done.set()

    waits: list[float] = []
    started = time.perf_counter()
    worker = threading.Thread(target=run)
    worker.start()
    while True:  # at least one probe, even when the action is done before the first
        begin = time.perf_counter()
        probe()
        waits.append(time.perf_counter() - begin)
        if done.is_set():
            break
        time.sleep(poll_s)
    worker.join()
    if failure:
        raise failure[0]
    return {
        "action_seconds": round(time.perf_counter() - started, 2),
        "longest_wait_ms": round(max(waits) * 1000, 3),
        "p50_wait_ms": round(float(np.median(waits)) * 1000, 3),
        "probes": len(waits),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from threefold.apps.recs.catalog import Catalog, Item
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.events import Event
    from threefold.apps.recs.recommender import Ranker, Recommender
    from threefold.core.encoder import HashingEncoder

    n = args.items
    items = [Item(f"i{i}", f"title {i}", "", f"cat{i % 20}") for i in range(n)]
    vectors = np.random.default_rng(args.seed).standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    known = {item.item_id: vectors[i] for i, item in enumerate(items)}
    events = [
        Event(f"u{j % 2000}", f"i{(j * 7919) % n}", "view", 1_700_000_000 + j)
        for j in range(50_000)
    ]
    engine = Recommender(Catalog(items), HashingEncoder(384), events=events)
    begin = time.perf_counter()
    engine.build(known)
    build_seconds = time.perf_counter() - begin

    def probe() -> None:
        engine.has_item("i1")

    poll = args.poll_ms / 1000
    new_ranker = Ranker(
        encoder=HashingEncoder(384), combiner=LinearCombiner(), version="v2", vectors=known
    )
    rows = {
        "ranker swap": longest_wait(lambda: engine.swap_ranker(new_ranker), probe, poll),
        "upsert one new item": longest_wait(
            lambda: engine.upsert_items([Item("new-1", "Moka pot", "coffee", "cat1")]),
            probe,
            poll,
        ),
        "upsert one existing item": longest_wait(
            lambda: engine.upsert_items([Item("i5", "title 5, renamed", "", "cat5")]),
            probe,
            poll,
        ),
    }
    report = {
        "benchmark": "recs_lock_waits",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "catalog": f"{n:,} synthetic items, random unit vectors d=384 (seed {args.seed}), "
        "20 categories, 50,000 view events; default index",
        "probe": f"has_item (takes the recommender's lock like a request) every {args.poll_ms} ms",
        "build_seconds": round(build_seconds, 1),
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": load_average(),
        },
        "command": "python -m bench.recs_lock_waits --items " + str(n),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print("| action | took s | longest request wait ms | median wait ms |")
    print("| --- | --- | --- | --- |")
    for name, row in rows.items():
        print(
            f"| {name} | {row['action_seconds']} | {row['longest_wait_ms']} | "
            f"{row['p50_wait_ms']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
