"""Benchmark: the recommendation eval contract on MovieLens-100k, model vs three baselines.

    python -m bench.recs_movielens [--data DIR] [--max-steps N] [--no-fine-tune]

Runs `threefold recs eval --items DIR/items.csv --interactions DIR/interactions.csv --k 10`
(leave-last-out per user, all unseen items ranked; the combiner is tuned on each user's
second-to-last item, never the held-out one) and writes bench/results/recs_movielens.json.
Prints one Markdown table row with the columns:

| model | data | users | NDCG@10 | HR@10 | MRR | best baseline | item-kNN | pop | text | train s |
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.commands import threefold_command
from bench.machine import load_average

DEFAULT_DATA = Path("/work/shared/data/rec/movielens100k")
RESULTS = Path(__file__).resolve().parent / "results" / "recs_movielens.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with items.csv")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--max-pairs", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-fine-tune", action="store_true")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    items, interactions = args.data / "items.csv", args.data / "interactions.csv"
    if not items.is_file() or not interactions.is_file():
        sys.exit(
            f"benchmark data not found in {args.data}: this benchmark needs MovieLens-100k as "
            "items.csv and interactions.csv. Pass --data DIR."
        )
    # fmt: off
    command = [
        *threefold_command(), "recs", "eval", "--items", str(items),
        "--interactions", str(interactions), "--k", str(args.k),
        "--max-steps", str(args.max_steps), "--max-pairs", str(args.max_pairs),
        "--batch-size", str(args.batch_size), "--seed", str(args.seed),
        "--no-fine-tune" if args.no_fine_tune else "--fine-tune",
    ]
    # fmt: on
    started = datetime.now(timezone.utc)
    load = load_average()
    print("$", " ".join(command), file=sys.stderr, flush=True)
    wall = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - wall
    if done.returncode != 0:
        sys.exit(f"`threefold recs eval` failed with exit code {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    key = f"ndcg@{args.k}"
    best_name = max(result["baselines"], key=lambda name: result["baselines"][name][key])
    best = result["baselines"][best_name][key]
    report = {
        "benchmark": "recs_movielens",
        "dataset": str(args.data),
        "protocol": "leave-last-out per user (last interaction by time hidden), all items the "
        "user has not interacted with ranked; combiner tuned on the second-to-last item",
        "result": result,
        "best_baseline": best_name,
        "beats_best_baseline": result["model"][key] > best,
        "relative_gain_over_best_baseline": round(result["model"][key] / best - 1, 4)
        if best
        else None,
        "wall_seconds": round(wall, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(command),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    model, base = result["model"], result["baselines"]
    no_text = result["ablation"]["model_without_text_features"]
    tuned = "fine-tuned MiniLM" if not args.no_fine_tune else "base MiniLM"
    print(
        f"| threefold recs ({tuned} + tuned combiner) | MovieLens-100k leave-last-out "
        f"| {result['users']} | {model[key]:.4f} (no text: {no_text[key]:.4f}) "
        f"| {model[f'hr@{args.k}']:.4f} "
        f"| {model['mrr']:.4f} | {best:.4f} ({best_name}) | {base['item_knn'][key]:.4f} "
        f"| {base['popularity'][key]:.4f} | {base['text_similarity'][key]:.4f} "
        f"| {model['train_seconds']:.0f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
