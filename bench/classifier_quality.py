"""Benchmark: classifier quality on real data, each row against a baseline measured in the same run.

    nice -n 10 python -m bench.classifier_quality small-data [--data PATH] [--seeds 0 1 2 3 4]
        [--base DIR --out bench/results/classifier_small_data_mpnet.json]
    nice -n 10 python -m bench.classifier_quality multitask-speed [--headlines PATH]

small-data: the learning curve on Financial PhraseBank. For each seed and each size k in
8 / 16 / 32 / 64 examples per label, k examples of each label are sampled from fpb_dev.csv and
the rest of the file is the test set. Rows: `threefold classifier train` defaults
(strategy auto: contrastive below 64 per label, fine-tune at 64), the contrastive path forced
at 64, and the baseline, logistic regression on frozen MiniLM sentence embeddings (with --base,
both use that base instead). Writes bench/results/classifier_small_data.json and prints a
Markdown table (mean +- spread over seeds).

multitask-speed: alerts scoring throughput, two classifiers (today) vs one multi-task pass,
fp32 and int8; writes bench/results/classifier_multitask_speed.json.

bases: each base model's parameters, encoding speed (sentences/s, fp32, batch 64) and frozen
quality (logistic regression on its mean-pooled embeddings, stratified 80/20 of fpb_dev.csv, 3
seeds); the packaged MiniLM is the baseline. Pass other bases with --bases DIR ... (e.g. the
folder `threefold models fetch-base all-mpnet-base-v2` prints). Writes classifier_bases.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.machine import load_average, torch_machine
from bench.seeds import mean_and_spread

DEFAULT_DATA = Path("/work/shared/data/fin/financial_phrasebank/fpb_dev.csv")
TOPIC_DATA = Path("/work/shared/data/fin/twitter_fin_news_topic/train.csv")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (8, 16, 32, 64)
BASELINE = "logistic regression on frozen all-MiniLM-L6-v2 embeddings (SetFit paper baseline)"

logger = logging.getLogger("bench.classifier_quality")


def sample_per_label(labels: list[str], k: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, rest): k random indices of each label, and every other index."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    for label in sorted(set(labels)):
        indices = [i for i, y in enumerate(labels) if y == label]
        train.extend(int(i) for i in rng.choice(indices, size=k, replace=False))
    chosen = set(train)
    return sorted(train), [i for i in range(len(labels)) if i not in chosen]


def small_data(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from threefold.core.base_model import resolve_base_model
    from threefold.core.classifier_training import train_classifier
    from threefold.core.embedding_classifier import EmbeddingClassifier
    from threefold.core.evaluation import classification_report
    from threefold.core.labelled_data import read_labelled
    from threefold.core.small_data import embed_texts, fit_logistic_head
    from threefold.core.training_config import TrainingConfig

    texts, labels = read_labelled(args.data)
    names = sorted(set(labels))
    base = resolve_base_model(args.base)
    frozen = EmbeddingClassifier(AutoModel.from_pretrained(base), torch.nn.Linear(1, 1))
    tokenizer = AutoTokenizer.from_pretrained(base)
    cache: dict[int, torch.Tensor] = {}

    def embeddings(indices: list[int]) -> torch.Tensor:
        missing = [i for i in indices if i not in cache]
        if missing:
            vectors = embed_texts(frozen, tokenizer, [texts[i] for i in missing], 128, "cpu")
            cache.update(zip(missing, vectors, strict=True))
        return torch.stack([cache[i] for i in indices])

    runs = []
    for k in args.sizes:
        for seed in args.seeds:
            train, rest = sample_per_label(labels, k, seed)
            if args.test_sample and len(rest) > args.test_sample:
                rng = np.random.default_rng(1000 + seed)
                rest = sorted(int(i) for i in rng.choice(rest, args.test_sample, replace=False))
            train_texts = [texts[i] for i in train]
            train_labels = [labels[i] for i in train]
            rest_labels = [labels[i] for i in rest]

            head = fit_logistic_head(
                embeddings(train), torch.tensor([names.index(y) for y in train_labels]), 3
            )
            baseline = head(embeddings(rest)).argmax(dim=1).tolist()
            report = classification_report(rest_labels, [names[i] for i in baseline], labels=names)
            runs.append(_run("baseline", k, seed, report, None, None, len(rest)))

            variants = [("threefold auto", "auto")]
            if args.contrastive_steps:
                variants = [
                    (f"threefold contrastive, {args.contrastive_steps} steps", "contrastive")
                ]
            elif k >= 64:
                variants.append(("threefold contrastive", "contrastive"))
            for row, strategy in variants:
                config = TrainingConfig(
                    seed=seed, eval_fraction=0.0, output_progress=False, strategy=strategy
                )
                begun = time.perf_counter()
                model = train_classifier(
                    train_texts, train_labels, config=config, base_model=args.base
                )
                seconds = time.perf_counter() - begun
                predicted = model.predict([texts[i] for i in rest])
                report = classification_report(rest_labels, predicted, labels=names)
                run = _run(row, k, seed, report, model.metrics, seconds, len(rest))
                runs.append(run)
            logger.info(
                "seed %d, k %d: %s",
                seed,
                k,
                {r["row"]: r["accuracy"] for r in runs if r["k"] == k and r["seed"] == seed},
            )
            _write(args, runs, partial=True)
    return _write(args, runs, partial=False)


def multitask_speed(args: argparse.Namespace) -> dict:
    """Scoring throughput: topic + sentiment as two classifiers vs one multi-task pass.

    Speed does not depend on the trained weights, so the models are built straight from the
    base (random heads); the rounds are interleaved so that a busy CPU slows every setup alike.
    """
    import copy

    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from threefold.core.base_model import resolve_base_model
    from threefold.core.classifier import TextClassifier
    from threefold.core.labelled_data import read_labelled
    from threefold.core.model_directory import quantize_dynamic_int8
    from threefold.core.multitask import MultiTaskClassifier, MultiTaskModel

    texts, topics = read_labelled(args.headlines)
    texts = texts[: args.n_texts]
    base = resolve_base_model(None)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tasks = {"topic": sorted(set(topics)), "sentiment": ["negative", "neutral", "positive"]}
    max_length = 64

    def single(labels: list[str], int8: bool) -> TextClassifier:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
        model.eval()
        model = quantize_dynamic_int8(model) if int8 else model
        return TextClassifier(
            model, tokenizer, labels, base_model=base, max_length=max_length, quantized=int8
        )

    def joint(int8: bool) -> MultiTaskClassifier:
        hidden = AutoModel.from_pretrained(base).config.hidden_size
        model = MultiTaskModel(
            AutoModel.from_pretrained(base),
            {t: torch.nn.Linear(hidden, len(labels)) for t, labels in tasks.items()},
        ).eval()
        model = quantize_dynamic_int8(copy.deepcopy(model)) if int8 else model
        return MultiTaskClassifier(
            model, tokenizer, tasks, base_model=base, max_length=max_length, quantized=int8
        )

    setups = {
        "two classifiers fp32 (today)": [
            single(tasks["topic"], False),
            single(tasks["sentiment"], False),
        ],
        "two classifiers int8": [single(tasks["topic"], True), single(tasks["sentiment"], True)],
        "multi-task fp32 (one pass)": [joint(False)],
        "multi-task int8 (one pass)": [joint(True)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in setups}
    for round_ in range(args.rounds):
        for name, models in setups.items():
            started = time.perf_counter()
            for model in models:
                model.predict_proba(texts, batch_size=64)
            seconds[name].append(time.perf_counter() - started)
        logger.info("round %d: %s", round_, {n: round(v[-1], 2) for n, v in seconds.items()})
    rates = {name: round(len(texts) / min(values), 1) for name, values in seconds.items()}
    today = rates["two classifiers fp32 (today)"]
    result = {
        "benchmark": "classifier_quality multitask-speed",
        "dataset": f"{args.headlines} (first {len(texts)} headlines)",
        "baseline": "two separate MiniLM-L6 sequence classifiers (topic, sentiment), fp32",
        "headlines_per_second_best_round": rates,
        "speedup_vs_today": {name: round(rate / today, 2) for name, rate in rates.items()},
        "rounds_seconds": seconds,
        "goal": ">= 1.8x today's scoring throughput (one pass, int8), accuracy within 0.5 pt",
        "accuracy": "not measured in this run (needs the twitter topic/sentiment training runs)",
        "max_length": max_length,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_end": load_average(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.classifier_quality " + " ".join(sys.argv[1:]),
    }
    out = args.out or RESULTS / "classifier_multitask_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, rate in rates.items():
        print(f"| {name} | {rate} headlines/s | x{result['speedup_vs_today'][name]} |")
    return result


def stratified_split(labels: list[str], share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test): `share` of each label's indices (random, per seed) are the test set."""
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in sorted(set(labels)):
        indices = [i for i, y in enumerate(labels) if y == label]
        test.extend(
            int(i) for i in rng.choice(indices, size=round(share * len(indices)), replace=False)
        )
    chosen = set(test)
    return [i for i in range(len(labels)) if i not in chosen], sorted(test)


def bases(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from threefold.core.base_model import resolve_base_model
    from threefold.core.embedding_classifier import EmbeddingClassifier
    from threefold.core.evaluation import classification_report
    from threefold.core.labelled_data import read_labelled
    from threefold.core.small_data import embed_texts, fit_logistic_head

    texts, labels = read_labelled(args.data)
    names = sorted(set(labels))
    label_ids = torch.tensor([names.index(y) for y in labels])
    rows = []
    for location in [None, *args.bases]:
        path = resolve_base_model(location)
        body = AutoModel.from_pretrained(path)
        model = EmbeddingClassifier(body, torch.nn.Linear(1, 1))
        tokenizer = AutoTokenizer.from_pretrained(path)
        embed_texts(model, tokenizer, texts[:64], 128, "cpu")  # warm-up
        load_before = load_average()
        begun = time.perf_counter()
        vectors = embed_texts(model, tokenizer, texts, 128, "cpu")
        seconds = time.perf_counter() - begun
        runs = []
        for seed in args.seeds[:3]:
            train, test = stratified_split(labels, 0.2, seed)
            head = fit_logistic_head(vectors[train], label_ids[train], len(names))
            predicted = head(vectors[test]).argmax(dim=1).tolist()
            report = classification_report(
                [labels[i] for i in test], [names[i] for i in predicted], labels=names
            )
            runs.append(
                {"seed": seed, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
            )
        row = {
            "base": "all-MiniLM-L6-v2 (packaged, default)" if location is None else str(location),
            "parameters": sum(p.numel() for p in body.parameters()),
            "layers": body.config.num_hidden_layers,
            "hidden": body.config.hidden_size,
            "sentences_per_s": round(len(texts) / seconds, 1),
            "load_average_during": [load_before, load_average()],
            "runs": runs,
        }
        for key in ("accuracy", "macro_f1"):
            row.update(mean_and_spread(key, [r[key] for r in runs]))
        logger.info("%s", {k: v for k, v in row.items() if k != "runs"})
        rows.append(row)
    result = {
        "benchmark": "classifier_quality bases",
        "dataset": str(args.data),
        "split": "stratified 80/20 per seed (test = 20 % of each label)",
        "seeds": args.seeds[:3],
        "method": "frozen base, mean-pooled embeddings (max_length 128), multinomial logistic "
        "regression (L2, C=1); speed = embedding every sentence of the file, batch 64, fp32",
        "baseline": "all-MiniLM-L6-v2 (the packaged default)",
        "rows": rows,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.classifier_quality " + " ".join(sys.argv[1:]),
    }
    out = args.out or RESULTS / "classifier_bases.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| base | parameters | sentences/s | accuracy (mean, min-max) | macro-F1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['base']} | {r['parameters'] / 1e6:.1f}M | {r['sentences_per_s']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_spread'][0]:.3f}-{r['accuracy_spread'][1]:.3f}) "
            f"| {r['macro_f1']:.3f} |"
        )
    return result


def _run(row, k, seed, report, metrics, seconds, n_test) -> dict:
    run = {
        "row": row,
        "k": k,
        "seed": seed,
        "n_test": n_test,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
    }
    if metrics is not None:
        run.update(
            strategy=metrics["strategy"],
            warnings=metrics["warnings"],
            steps=metrics["steps"],
            train_seconds=round(seconds, 1),
        )
    return run


def _summary(runs: list[dict]) -> list[dict]:
    rows = []
    for row in dict.fromkeys(r["row"] for r in runs):
        for k in sorted({r["k"] for r in runs if r["row"] == row}):
            group = [r for r in runs if r["row"] == row and r["k"] == k]
            entry = {"row": row, "k": k, "seeds": [r["seed"] for r in group]}
            for key in ("accuracy", "macro_f1"):
                entry.update(mean_and_spread(key, [r[key] for r in group]))
            if "strategy" in group[0]:
                entry["strategy"] = sorted({r["strategy"] for r in group})
                entry["train_seconds_mean"] = round(
                    statistics.mean(r["train_seconds"] for r in group), 1
                )
            rows.append(entry)
    return rows


def _write(args: argparse.Namespace, runs: list[dict], *, partial: bool) -> dict:
    result = {
        "benchmark": "classifier_quality small-data",
        "dataset": str(args.data),
        "split": "k examples of each label sampled from the file (per seed); the test set is "
        + (
            f"a random {args.test_sample} of the other rows (per seed, fixed)"
            if args.test_sample
            else "every other row"
        )
        + "; no eval split (eval_fraction 0)",
        "seeds": args.seeds,
        "sizes": args.sizes,
        "baseline": BASELINE
        if args.base is None
        else f"logistic regression on frozen embeddings of the same base ({args.base})",
        "base_model": args.base or "all-MiniLM-L6-v2 (default)",
        "goal": "k=16: accuracy >= 0.70; never a one-class model without a warning",
        "partial": partial,
        "summary": _summary(runs),
        "runs": runs,
        "machine": torch_machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.classifier_quality " + " ".join(sys.argv[1:]),
    }
    out = args.out or RESULTS / "classifier_small_data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def print_table(result: dict) -> None:
    print("| rows | k per label | accuracy (mean, min-max) | macro-F1 | path | train s |")
    print("|---|---|---|---|---|---|")
    for s in result["summary"]:
        print(
            f"| {s['row']} | {s['k']} | {s['accuracy']:.3f} ({s['accuracy_spread'][0]:.3f}-"
            f"{s['accuracy_spread'][1]:.3f}) | {s['macro_f1']:.3f} | "
            f"{', '.join(s.get('strategy', ['frozen embeddings']))} | "
            f"{s.get('train_seconds_mean', '')} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["small-data", "multitask-speed", "bases"])
    parser.add_argument("--bases", nargs="*", default=[], help="other base model folders")
    parser.add_argument(
        "--base", help="small-data: the base model folder (default: the packaged MiniLM)"
    )
    parser.add_argument("--headlines", type=Path, default=TOPIC_DATA, help="text,label CSV")
    parser.add_argument("--n-texts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV (FPB)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--test-sample",
        type=int,
        default=0,
        help="score a random N of the remaining rows per seed instead of all (0: all)",
    )
    parser.add_argument(
        "--contrastive-steps",
        type=int,
        default=0,
        help="sweep: force the contrastive path with exactly N steps (write to another --out)",
    )
    parser.add_argument("--out", type=Path, help="results JSON")
    args = parser.parse_args(argv)
    if args.contrastive_steps:
        from threefold.core import small_data as path

        path.MIN_STEPS = path.MAX_STEPS = args.contrastive_steps
    if args.section in ("small-data", "bases") and not args.data.is_file():
        sys.exit(f"benchmark data {args.data} not found; pass --data PATH to fpb_dev.csv")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.section == "bases":
        bases(args)
        return 0
    if args.section == "multitask-speed":
        multitask_speed(args)
        return 0
    print_table(small_data(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
