"""Benchmark: fine-tune the default classifier on Financial PhraseBank through the CLI contract.

    python -m bench.classifier_fpb [--data PATH] [--epochs N]

Splits the file 80/20 (stratified, fixed seed), runs `threefold classifier train` on the 80%,
then `threefold classifier eval` on the 20% in fp32 and int8, and writes
bench/results/classifier_fpb.json. Prints one Markdown table row with the columns:

| model | data | accuracy | macro-F1 | train s | fp32 sent/s | int8 sent/s | int8 acc | reference |
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.commands import threefold_command
from bench.machine import load_average

DEFAULT_DATA = Path("/work/shared/data/fin/financial_phrasebank/fpb_dev.csv")
RESULTS = Path(__file__).resolve().parent / "results" / "classifier_fpb.json"
REFERENCE = {"model": "FinBERT (Araci 2019)", "accuracy": 0.86, "macro_f1": 0.84}
TEST_FRACTION = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="share of the training split held out for early stopping",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--random-batches",
        action="store_true",
        help="train on random batches instead of the default length-grouped ones",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--keep-model", type=Path, help="copy the trained classifier here")
    args = parser.parse_args(argv)

    if not args.data.is_file():
        sys.exit(
            f"benchmark data {args.data} not found: this benchmark needs Financial PhraseBank "
            "(text,label CSV). Pass --data PATH to a copy of fpb_dev.csv."
        )

    from threefold.core.labelled_data import read_labelled, stratified_split

    texts, labels = read_labelled(args.data)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, args.seed)
    started = datetime.now(timezone.utc)
    load_at_start = load_average()

    with tempfile.TemporaryDirectory(prefix="threefold-bench-") as tmp:
        work = Path(tmp)
        _write(work / "train.csv", [(texts[i], labels[i]) for i in train_idx])
        _write(work / "test.csv", [(texts[i], labels[i]) for i in test_idx])
        model_dir = work / "model"
        # fmt: off
        train_args = [
            "train", "--train", str(work / "train.csv"), "--out", str(model_dir),
            "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate),
            "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
            "--eval-fraction", str(args.eval_fraction), "--seed", str(args.seed),
            "--random-batches" if args.random_batches else "--group-by-length",
        ]
        # fmt: on
        wall = time.perf_counter()
        summary = _classifier(train_args)
        train_wall = time.perf_counter() - wall
        eval_args = ["eval", "--model", str(model_dir), "--data", str(work / "test.csv")]
        fp32 = _classifier([*eval_args, "--device", "cpu"])
        int8 = _classifier([*eval_args, "--quantize"])
        if args.keep_model:
            shutil.copytree(model_dir, args.keep_model, dirs_exist_ok=True)

    import torch

    result = {
        "benchmark": "classifier_fpb",
        "dataset": str(args.data),
        "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} of the file, seed "
        f"{args.seed}; early stopping on a {args.eval_fraction:g} stratified share of the 80%",
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "base_model": "all-MiniLM-L6-v2 (default)",
        "hyperparameters": {
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "eval_fraction": args.eval_fraction,
            "class_weighting": True,
            "early_stopping_patience": 2,
            "batches": "random" if args.random_batches else "length-grouped",
        },
        "accuracy": fp32["accuracy"],
        "macro_f1": fp32["macro_f1"],
        "per_class": fp32["per_class"],
        "confusion": fp32["confusion"],
        "train_seconds": summary["train_seconds"],
        "train_device": summary.get("device"),
        "train_wall_seconds": round(train_wall, 1),
        "epochs_completed": summary["epochs_completed"],
        "early_stopping_eval_macro_f1": summary["eval_macro_f1"],
        "fp32_sentences_per_second": fp32["sentences_per_second"],
        "int8_sentences_per_second": int8["sentences_per_second"],
        "int8_accuracy": int8["accuracy"],
        "int8_macro_f1": int8["macro_f1"],
        "reference": REFERENCE,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_average(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": fp32["device"],
        },
        "date": started.isoformat(timespec="seconds"),
        "note": "timings are wall-clock on a CPU shared with other jobs whenever the load "
        "average exceeds cpu_count; compare sentences/s within one run only",
        "command": "python -m bench.classifier_fpb " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"| threefold classifier (MiniLM-L6 fine-tune) | FPB dev, 20% test (n={len(test_idx)}) "
        f"| {result['accuracy']:.3f} | {result['macro_f1']:.3f} | {result['train_seconds']:.0f} "
        f"| {result['fp32_sentences_per_second']:.0f} | {result['int8_sentences_per_second']:.0f} "
        f"| {result['int8_accuracy']:.3f} | FinBERT 0.86 / 0.84 |"
    )
    return 0


def _classifier(args: list[str]) -> dict:
    """Run `threefold classifier ARGS`; stderr streams through, stdout is its JSON result."""
    command = [*threefold_command(), "classifier", *args]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"`threefold classifier {args[0]}` failed with exit code {done.returncode}")
    return json.loads(done.stdout)


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    raise SystemExit(main())
