"""Benchmark: one multi-task model (topic + sentiment heads) against two separate classifiers.

    nice -n 10 python -m bench.classifier_multitask [--data-dir ../shared/data/fin] [--epochs 3]
        [--no-class-weighting]

Data: Twitter Financial News topic and sentiment `train.csv` (two files, different headlines).
Split: a stratified 20 % of each file (seed 42, as bench/alerts_quality.py) is its test set.
Same run, same TrainingConfig (MiniLM-L6, max length 64; epochs, learning rate and class
weighting from the flags):
- two classifiers: `train_classifier` on each file's 80 % (what `alerts train` does without
  --multitask; early stopping on 10 % of it);
- one multi-task model: `train_multitask` on both 80 % sets merged (`merge_task_data`: each
  headline labelled for its own task), 10 % held out for its eval record.
Each is scored on the two test sets, fp32 and int8, and timed scoring the topic test headlines
as the consumer does (two passes vs one). Writes bench/results/classifier_multitask.json.
With --per-label K each file's training share is cut to K examples of each label (small data:
every model then takes the contrastive path), test sets unchanged. --base trains every model
from another local base (e.g. all-mpnet-base-v2 from `threefold models fetch-base`); --no-int8
leaves out the int8 rows and the scoring speeds (int8 runs on the CPU only: for a GPU run).
--merge FILE... joins runs that differ only in --seed (one process per seed) into --out: every
figure becomes the mean over the seeds, accuracies with their min-max, the runs kept whole.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.alerts_quality import DEFAULT_DATA, TASKS, TEST_FRACTION
from bench.classifier_quality import sample_per_label
from bench.machine import torch_machine

RESULTS = Path(__file__).resolve().parent / "results" / "classifier_multitask.json"
FILES = {"topic": TASKS["twitter_topic"][0], "sentiment": TASKS["twitter_sentiment"][0]}
GOAL = "multi-task accuracy within 0.5 point of two classifiers; scoring >= 1.8x (one pass, int8)"

logger = logging.getLogger("bench.classifier_multitask")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--class-weighting",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight the loss by inverse label frequency (default: the TrainingConfig default)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--per-label",
        type=int,
        metavar="K",
        help="small data: train on K examples of each label drawn (with --seed) from each "
        "file's training share (the test sets stay whole)",
    )
    parser.add_argument("--base", help="base model directory (default: the packaged MiniLM)")
    parser.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score int8 copies and time the scoring (--no-int8: fp32 accuracy only)",
    )
    parser.add_argument("--speed-texts", type=int, default=512, help="headlines timed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="train nothing: join result files that differ only in --seed into --out",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    paths = {task: args.data_dir / relative for task, relative in FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        sys.exit(f"benchmark data not found: {missing}; pass --data-dir to the shared fin/ folder")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from threefold.core.base_model import configure_offline

    configure_offline()
    from threefold.core.classifier import int8_copy
    from threefold.core.classifier_training import train_classifier
    from threefold.core.evaluation import classification_report
    from threefold.core.labelled_data import read_labelled, stratified_split
    from threefold.core.multitask import merge_task_data, train_multitask
    from threefold.core.training_config import TrainingConfig

    started = datetime.now(timezone.utc)
    weighting = {} if args.class_weighting is None else {"class_weighting": args.class_weighting}
    config = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        max_length=64,
        eval_fraction=0.1,
        seed=args.seed,
        output_progress=False,
        **weighting,
    )
    train, test = {}, {}
    for task, path in paths.items():
        texts, labels = read_labelled(path)
        kept, held = stratified_split(labels, TEST_FRACTION, args.seed)
        if args.per_label:
            drawn, _ = sample_per_label([labels[i] for i in kept], args.per_label, args.seed)
            kept = [kept[i] for i in drawn]
        train[task] = ([texts[i] for i in kept], [labels[i] for i in kept])
        test[task] = ([texts[i] for i in held], [labels[i] for i in held])

    def score(predict) -> dict[str, dict[str, float]]:
        """{task: accuracy, macro-F1} on its test set; `predict(task, texts)` -> labels."""
        out = {}
        for task, (texts, labels) in test.items():
            report = classification_report(labels, predict(task, texts))
            out[task] = {k: round(report[k], 4) for k in ("accuracy", "macro_f1")}
        return out

    rows: dict[str, dict] = {}
    separate, seconds = {}, {}
    for task, (texts, labels) in train.items():
        begun = time.perf_counter()
        separate[task] = train_classifier(texts, labels, base_model=args.base, config=config)
        seconds[task] = round(time.perf_counter() - begun, 1)
        logger.info("%s classifier trained in %.0f s: %s", task, seconds[task], separate[task])
    rows["two classifiers"] = {
        "fp32": score(lambda task, texts: separate[task].predict(texts)),
        "train_seconds": seconds,
        "stop_reason": {t: m.metrics.get("stop_reason") for t, m in separate.items()},
    }
    logger.info("two classifiers: %s", rows["two classifiers"])
    texts, targets = merge_task_data(train)
    begun = time.perf_counter()
    joint = train_multitask(texts, targets, base_model=args.base, config=config)
    joint_seconds = round(time.perf_counter() - begun, 1)
    rows["one multi-task model"] = {
        "fp32": score(lambda task, texts: joint.predict(texts)[task]),
        "train_seconds": joint_seconds,
        "n_train_per_task": joint.metrics["n_train_per_task"],
        "int8_recorded_decision": joint.metrics["int8"],
    }
    speed: dict[str, float] = {}
    if args.int8:
        quantized = {task: int8_copy(model) for task, model in separate.items()}
        joint_int8 = int8_copy(joint)
        rows["two classifiers"]["int8"] = score(lambda task, texts: quantized[task].predict(texts))
        rows["one multi-task model"]["int8"] = score(
            lambda task, texts: joint_int8.predict(texts)[task]
        )
        headlines = test["topic"][0][: args.speed_texts]
        speed = {
            "two classifiers fp32": _rate(headlines, [m.predict_proba for m in separate.values()]),
            "two classifiers int8": _rate(headlines, [m.predict_proba for m in quantized.values()]),
            "multi-task fp32 (one pass)": _rate(headlines, [joint.predict_proba]),
            "multi-task int8 (one pass)": _rate(headlines, [joint_int8.predict_proba]),
        }
    logger.info("one multi-task model: %s", rows["one multi-task model"])
    precisions = ("fp32", "int8") if args.int8 else ("fp32",)
    two, one = rows["two classifiers"], rows["one multi-task model"]
    result = {
        "benchmark": "classifier_multitask",
        "datasets": {task: str(path) for task, path in paths.items()},
        "split": f"stratified {TEST_FRACTION:.0%} of each file is its test set (seed {args.seed})"
        + (
            f"; training: {args.per_label} examples of each label drawn from the rest"
            if args.per_label
            else ""
        ),
        "per_label": args.per_label,
        "strategy": {
            "two classifiers": {t: m.metrics.get("strategy") for t, m in separate.items()},
            "one multi-task model": joint.metrics.get("strategy"),
        },
        "base_model": args.base or "all-MiniLM-L6-v2 (default)",
        "device": joint.device,
        "config": config.to_dict(),
        "baseline": "two separate classifiers (train_classifier), same config, same run",
        "goal": GOAL,
        "rows": rows,
        "accuracy_difference_points": {
            precision: {
                task: round(
                    100 * (one[precision][task]["accuracy"] - two["fp32"][task]["accuracy"]), 2
                )
                for task in FILES
            }
            for precision in precisions
        },
        "headlines_per_second": speed,
        "speedup_vs_two_classifiers_fp32": {
            name: round(rate / speed["two classifiers fp32"], 2) for name, rate in speed.items()
        },
        "machine": torch_machine(),
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench.classifier_multitask " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, row in rows.items():
        for precision in precisions:
            cells = " | ".join(
                f"{row[precision][t]['accuracy']:.3f} / {row[precision][t]['macro_f1']:.3f}"
                for t in FILES
            )
            print(f"| {name} {precision} | {cells} |")
    print(json.dumps(result["speedup_vs_two_classifiers_fp32"]))
    return 0


def merge(files: list[Path], out: Path) -> int:
    """One result of several seeds: means (accuracy with min-max) where the runs had numbers."""
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in files]
    same = ("datasets", "per_label", "base_model", "baseline", "goal")
    for key in [*same, "config"]:
        values = [
            {k: v for k, v in run[key].items() if k != "seed"} if key == "config" else run[key]
            for run in runs
        ]
        if any(value != values[0] for value in values):
            sys.exit(f"--merge needs runs that differ only in --seed; they differ in {key}")
    seeds = [run["config"]["seed"] for run in runs]
    if len(set(seeds)) < len(seeds):
        sys.exit(f"--merge found one seed twice: {seeds}")

    def scores(name: str, precision: str) -> dict:
        table = [run["rows"][name][precision] for run in runs]
        averaged = _mean_of(table)
        for task, row in averaged.items():
            accuracies = [t[task]["accuracy"] for t in table]
            row["accuracy_spread"] = [min(accuracies), max(accuracies)]
        return averaged

    first = runs[0]
    rows = {}
    for name, row in first["rows"].items():
        rows[name] = {p: scores(name, p) for p in ("fp32", "int8") if p in row}
        rows[name]["train_seconds"] = _mean_of([run["rows"][name]["train_seconds"] for run in runs])

    result = {
        **{key: first[key] for key in ("benchmark", *same, "strategy")},
        "split": re.sub(r"\(seed \d+\)", f"(seeds {seeds})", first["split"]),
        "seeds": seeds,
        "device": first.get("device", "cpu"),
        "config": {k: v for k, v in first["config"].items() if k != "seed"},
        "rows": rows,
        "accuracy_difference_points": _mean_of([run["accuracy_difference_points"] for run in runs]),
        "headlines_per_second": _mean_of([run["headlines_per_second"] for run in runs]),
        "speedup_vs_two_classifiers_fp32": _mean_of(
            [run["speedup_vs_two_classifiers_fp32"] for run in runs]
        ),
        "machine": first["machine"],
        **({"weights_note": first["weights_note"]} if "weights_note" in first else {}),
        "date": max(run["date"] for run in runs),
        "command": " ; ".join(run["command"] for run in runs),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["accuracy_difference_points"]))
    return 0


def _mean_of(values: list) -> Any:
    """The mean of numbers (4 decimals), key by key through nested dicts."""
    if isinstance(values[0], dict):
        return {key: _mean_of([value[key] for value in values]) for key in values[0]}
    return round(statistics.mean(values), 4)


def _rate(texts: list[str], passes: list, rounds: int = 3) -> float:
    """Headlines per second over the best of `rounds`, each round running every pass."""
    best = float("inf")
    for _ in range(rounds):
        begun = time.perf_counter()
        for predict_proba in passes:
            predict_proba(texts, batch_size=64)
        best = min(best, time.perf_counter() - begun)
    return round(len(texts) / best, 1)


if __name__ == "__main__":
    raise SystemExit(main())
