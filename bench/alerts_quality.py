"""Benchmark: quality of the alerts classifiers on public financial data, with baselines.

    python -m bench.alerts_quality [--data-dir ../shared/data/fin] [--max-train N] [--epochs E]

Three tasks, each a fixed stratified 80/20 split (seed 42) of one file:
- Financial PhraseBank `fpb_dev.csv` (sentiment): reference FinBERT 0.86 accuracy / 0.84 macro-F1
  (published on all of FPB with its own split: a reference point, not a like-for-like number);
- Twitter Financial News Sentiment `train.csv` (sentiment);
- Twitter Financial News Topic `train.csv` (20 topics).
The classifier (MiniLM-L6 fine-tune, core TextClassifier, as `threefold alerts train` does) is
trained on a random subsample of at most --max-train rows of the 80% (CPU time: say so), and is
scored on the whole 20%. Baselines in the same run on the same 20%: VADER (lexicon, compound
>= 0.05 positive, <= -0.05 negative, else neutral) for sentiment; the majority class for topic.
Writes bench/results/alerts_quality.json and prints one Markdown row per task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from bench.machine import load_average

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fin"
RESULTS = Path(__file__).resolve().parent / "results" / "alerts_quality.json"
TASKS = {
    "fpb_sentiment": ("financial_phrasebank/fpb_dev.csv", "sentiment"),
    "twitter_sentiment": ("twitter_fin_news_sentiment/train.csv", "sentiment"),
    "twitter_topic": ("twitter_fin_news_topic/train.csv", "topic"),
}
REFERENCES = {
    "fpb_sentiment": "FinBERT 0.86 / 0.84 (Araci 2019, all of FPB)",
    "twitter_sentiment": "FinBERT-tone 0.88 acc (its own validation split)",
    "twitter_topic": "none published here",
}
TEST_FRACTION = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset")
    parser.add_argument("--max-train", type=int, default=2000, help="training rows per task")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        sys.exit(f"unknown task(s) {unknown}; choose from {sorted(TASKS)}")
    missing = [TASKS[t][0] for t in tasks if not (args.data_dir / TASKS[t][0]).is_file()]
    if missing:
        sys.exit(
            f"benchmark data not found under {args.data_dir}: {missing}. Pass --data-dir to the "
            "fin/ folder of the shared data (see its README)."
        )

    from threefold.core.base_model import configure_offline
    from threefold.core.training_config import TrainingConfig

    configure_offline()
    import torch

    started = datetime.now(timezone.utc)
    load_at_start = load_average()
    results = {}
    for task in tasks:
        results[task] = _run_task(task, args)
        print(_markdown_row(task, results[task]), flush=True)
    report = {
        "benchmark": "alerts_quality",
        "data_dir": str(args.data_dir),
        "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} of each file, seed "
        f"{args.seed}; training on a random subsample of at most {args.max_train} rows of the "
        "80% (CPU budget), evaluation on the whole 20%",
        "base_model": "all-MiniLM-L6-v2 (default)",
        "hyperparameters": {
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "eval_fraction": 0.1,
            "class_weighting": TrainingConfig().class_weighting,
        },
        "tasks": results,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_average(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench.alerts_quality " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _run_task(task: str, args) -> dict:
    from threefold.core.base_model import base_model_from_env
    from threefold.core.classifier_training import train_classifier
    from threefold.core.evaluation import classification_report
    from threefold.core.labelled_data import read_labelled, stratified_split
    from threefold.core.training_config import TrainingConfig

    relative, kind = TASKS[task]
    path = args.data_dir / relative
    texts, labels = read_labelled(path)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, args.seed)
    subsampled = len(train_idx) > args.max_train
    if subsampled:
        train_idx = sorted(random.Random(args.seed).sample(train_idx, args.max_train))
    train_texts = [texts[i] for i in train_idx]
    train_labels = [labels[i] for i in train_idx]
    test_texts = [texts[i] for i in test_idx]
    test_labels = [labels[i] for i in test_idx]
    label_names = sorted(set(labels))
    print(f"{task}: training on {len(train_idx)} rows, testing on {len(test_idx)}", flush=True)

    config = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        eval_fraction=0.1,
        seed=args.seed,
    )
    wall = time.perf_counter()
    model = train_classifier(
        train_texts, train_labels, base_model=base_model_from_env(), config=config
    )
    train_seconds = time.perf_counter() - wall
    wall = time.perf_counter()
    predicted = model.predict(test_texts, batch_size=64)
    predict_seconds = time.perf_counter() - wall
    report = classification_report(test_labels, predicted, labels=label_names)

    if kind == "sentiment":
        baseline_name = "VADER lexicon (vaderSentiment, compound thresholds +-0.05)"
        baseline_pred = _vader(test_texts)
    else:
        majority = Counter(train_labels).most_common(1)[0][0]
        baseline_name = f"majority class ({majority!r})"
        baseline_pred = [majority] * len(test_texts)
    baseline = classification_report(test_labels, baseline_pred, labels=label_names)
    return {
        "dataset": str(path),
        "n_train": len(train_idx),
        "n_train_available": len(stratified_split(labels, TEST_FRACTION, args.seed)[0]),
        "train_subsampled": subsampled,
        "n_test": len(test_idx),
        "labels": label_names,
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "per_class": report["per_class"],
        "baseline": {
            "name": baseline_name,
            "accuracy": round(baseline["accuracy"], 4),
            "macro_f1": round(baseline["macro_f1"], 4),
        },
        "reference": REFERENCES[task],
        "train_seconds": round(train_seconds, 1),
        "epochs_completed": model.metrics.get("epochs_completed"),
        "predict_sentences_per_second": round(len(test_texts) / predict_seconds, 1),
    }


def _vader(texts: list[str]) -> list[str]:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        sys.exit("the VADER baseline needs vaderSentiment: pip install 'threefold[bench]'")
    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        out.append(
            "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        )
    return out


def _markdown_row(task: str, result: dict) -> str:
    data = f"{Path(result['dataset']).parent.name}/{Path(result['dataset']).name}"
    sub = f", trained on {result['n_train']} rows" if result["train_subsampled"] else ""
    base = dict(result["baseline"], name=result["baseline"]["name"].replace("|", "\\|"))
    return (
        f"| alerts {task} (MiniLM-L6 fine-tune) | {data}, 20% held out (n={result['n_test']}{sub}) "
        f"| {result['accuracy']:.3f} | {result['macro_f1']:.3f} "
        f"| {base['name']}: {base['accuracy']:.3f} / {base['macro_f1']:.3f} "
        f"| {result['reference']} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
