"""Benchmark: the fine-tune recipe ablation on Financial PhraseBank, each lever against the
plain recipe on the same splits and seeds.

    nice -n 10 python -m bench.classifier_recipe [--data PATH] [--seeds 0 1 2] [--resume]
        [--teacher BASE_DIR] [--out FILE --goal TEXT]

Another text,label CSV (e.g. Twitter financial news) runs the same way with --data, its own
--out and the goal to record with --goal.

For each seed s: a stratified 20 % of fpb_dev.csv (drawn with seed s) is the test set; the
other 80 % trains, with the trainer's default early stopping on a stratified 10 % of it. Every
variant is `TrainingConfig` defaults with length-grouped batches and class weighting
(ABLATION_BASE: pinned, so old and new runs compare; both are train defaults now) plus one lever,
trained with seed s, so each lever's difference from the baseline is paired per seed; the
"random batches" row measures the grouping itself. With --teacher (a larger base, e.g.
all-mpnet-base-v2 from `threefold models fetch-base`), the teacher row is that base trained
the same way, and the distilled row is the default student trained with `teacher` set to it
(one teacher per seed, kept in --teacher-cache).
Writes bench/results/classifier_recipe.json after every run (--resume skips finished runs) and
prints a Markdown table: accuracy and macro-F1 as mean (min-max) over seeds, the mean paired
difference from the baseline, and training seconds. --merge FILE... joins the result files of
runs made in parallel (one process per seed, each with its own --out) into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.classifier_quality import DEFAULT_DATA, RESULTS, stratified_split
from bench.machine import torch_machine
from bench.seeds import mean_and_spread

BASELINE = "baseline"
ABLATION_BASE: dict[str, object] = {"group_by_length": True, "class_weighting": True}
VARIANTS: dict[str, dict[str, object]] = {
    BASELINE: {},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "learning rate 1e-4": {"learning_rate": 1e-4},
    "layer-wise LR decay 0.8": {"layer_lr_decay": 0.8},
    "FGM epsilon 1.0": {"adversarial_epsilon": 1.0},
    "R-Drop alpha 1.0": {"rdrop_alpha": 1.0},
    "random batches (no length grouping)": {"group_by_length": False},
    "R-Drop alpha 1.0, random batches": {"rdrop_alpha": 1.0, "group_by_length": False},
    "no class weighting": {"class_weighting": False},
    "checkpoint average 2": {"checkpoint_average": 2},
    "augmentation, 1 copy": {"augment_copies": 1},
    "combined: R-Drop 1.0, learning rate 1e-4, augmentation": {
        "rdrop_alpha": 1.0,
        "learning_rate": 1e-4,
        "augment_copies": 1,
    },
}
TEACHER = "teacher: the --teacher base, same recipe"
DISTILLED = "distilled from the teacher (alpha 0.5, T 2)"
TEACHER_VARIANTS = (TEACHER, DISTILLED)
TEST_SHARE = 0.2
EVAL_FRACTION = 0.1

logger = logging.getLogger("bench.classifier_recipe")


def run_variant(
    texts,
    labels,
    variant: str,
    seed: int,
    *,
    options: dict[str, object] | None = None,
    base_model: str | None = None,
    save_to: Path | None = None,
) -> dict:
    """Train `variant` (its `options`, default VARIANTS[variant]) on the seed's 80 % and score
    it on its 20 %; `save_to` keeps the model."""
    from threefold.core.classifier_training import train_classifier
    from threefold.core.evaluation import classification_report
    from threefold.core.training_config import TrainingConfig

    options = VARIANTS[variant] if options is None else options
    train, test = stratified_split(labels, TEST_SHARE, seed)
    config = dataclasses.replace(
        TrainingConfig(seed=seed, eval_fraction=EVAL_FRACTION, output_progress=False),
        strategy="fine-tune",
        **{**ABLATION_BASE, **options},
    )
    started = time.perf_counter()
    model = train_classifier(
        [texts[i] for i in train], [labels[i] for i in train], base_model=base_model, config=config
    )
    seconds = time.perf_counter() - started
    if save_to is not None:
        model.save(save_to)
    names = sorted(set(labels))
    report = classification_report(
        [labels[i] for i in test], model.predict([texts[i] for i in test]), labels=names
    )
    return {
        "variant": variant,
        "seed": seed,
        "options": options,
        "base_model": model.base_model,
        "n_train": len(train),
        "n_test": len(test),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "epochs_completed": model.metrics["epochs_completed"],
        "stop_reason": model.metrics["stop_reason"],
        "train_seconds": round(seconds, 1),
        "device": model.device,
        **({"teacher": model.metrics["teacher"]} if "teacher" in model.metrics else {}),
    }


def run_teacher_variant(texts, labels, variant: str, seed: int, args) -> dict:
    """The teacher row (trained and kept per seed) or the student distilled from it (the
    teacher is trained again, unrecorded, if its folder is gone)."""
    from threefold.core.classifier import META_FILE

    folder = args.teacher_cache / f"seed-{seed}"
    if variant == TEACHER or not (folder / META_FILE).is_file():
        row = run_variant(
            texts, labels, TEACHER, seed, options={}, base_model=str(args.teacher), save_to=folder
        )
        if variant == TEACHER:
            return row
    row = run_variant(texts, labels, variant, seed, options={"teacher": str(folder)})
    row["options"] = {"teacher": f"{args.teacher} fine-tuned with this seed (the teacher row)"}
    return row


def summarize(runs: list[dict]) -> list[dict]:
    """Per variant: mean and min-max over seeds, and the mean paired difference from the
    baseline over the seeds both have."""
    base = {r["seed"]: r for r in runs if r["variant"] == BASELINE}
    rows = []
    for variant in [*VARIANTS, *TEACHER_VARIANTS]:
        group = [r for r in runs if r["variant"] == variant]
        if not group:
            continue
        row: dict[str, object] = {"variant": variant, "seeds": [r["seed"] for r in group]}
        for key in ("accuracy", "macro_f1"):
            row.update(mean_and_spread(key, [r[key] for r in group]))
            paired = [r[key] - base[r["seed"]][key] for r in group if r["seed"] in base]
            row[f"{key}_vs_baseline"] = round(statistics.mean(paired), 4) if paired else None
        row["train_seconds_mean"] = round(statistics.mean(r["train_seconds"] for r in group), 1)
        rows.append(row)
    return rows


FPB_GOAL = "FPB accuracy >= 0.87 / macro-F1 >= 0.85 (FinBERT 0.86 / 0.84)"


def write(
    args: argparse.Namespace,
    runs: list[dict],
    *,
    partial: bool,
    machine: dict | None = None,
    commands: list[str] | None = None,
) -> dict:
    """Write --out: the runs, their summary, and the machine and commands they ran with
    (default: this one)."""
    result = {
        "benchmark": "classifier_recipe",
        "dataset": str(args.data),
        "split": f"per seed s: stratified {TEST_SHARE:.0%} of the file (drawn with seed s) is the "
        f"test set; early stopping on a stratified {EVAL_FRACTION:.0%} of the rest",
        "seeds": sorted({r["seed"] for r in runs}),
        "base_model": "all-MiniLM-L6-v2 (default)"
        + (
            "; teacher rows: the --teacher base"
            if any(r["variant"] == TEACHER for r in runs)
            else ""
        ),
        "baseline": "TrainingConfig defaults with length-grouped batches and class weighting "
        "(pinned; both are train defaults), fine-tune path, same split and seed"
        if any(r["variant"] == BASELINE for r in runs)
        else "none in this run",
        "goal": args.goal,
        "partial": partial,
        "summary": summarize(runs),
        "runs": runs,
        "machine": machine or torch_machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ; ".join(
            commands or ["python -m bench.classifier_recipe " + " ".join(sys.argv[1:])]
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def print_table(result: dict) -> None:
    print("| variant | seeds | accuracy (mean, min-max) | vs baseline | macro-F1 | vs baseline |")
    print("|---|---|---|---|---|---|")
    for s in result["summary"]:
        acc, f1 = s["accuracy_vs_baseline"], s["macro_f1_vs_baseline"]
        print(
            f"| {s['variant']} | {len(s['seeds'])} | {s['accuracy']:.3f} "
            f"({s['accuracy_spread'][0]:.3f}-{s['accuracy_spread'][1]:.3f}) | "
            f"{'' if acc is None else f'{acc:+.3f}'} | {s['macro_f1']:.3f} | "
            f"{'' if f1 is None else f'{f1:+.3f}'} |"
        )


def merge(args: argparse.Namespace) -> int:
    """Join parallel runs' result files into one (--merge); they must share data set and goal."""
    parts = [json.loads(path.read_text(encoding="utf-8")) for path in args.merge]
    for key in ("dataset", "goal"):
        found = sorted({part[key] for part in parts})
        if len(found) > 1:
            sys.exit(f"--merge needs result files of one {key}; found {found}")
    args.data, args.goal = Path(parts[0]["dataset"]), parts[0]["goal"]
    runs = [run for part in parts for run in part["runs"]]
    seen = [(run["variant"], run["seed"]) for run in runs]
    if len(set(seen)) < len(seen):
        sys.exit("--merge found the same variant and seed in two files; merge each run once")
    partial = any(part["partial"] for part in parts)
    commands = [part["command"] for part in parts]
    print_table(write(args, runs, partial=partial, machine=parts[0]["machine"], commands=commands))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV [FPB]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants", nargs="+", choices=[*VARIANTS, *TEACHER_VARIANTS], default=list(VARIANTS)
    )
    parser.add_argument("--teacher", type=Path, help="larger base model directory (teacher rows)")
    parser.add_argument(
        "--teacher-cache",
        type=Path,
        default=Path("/tmp/threefold-bench-teachers"),
        help="where each seed's teacher is kept (reused by --resume)",
    )
    parser.add_argument("--resume", action="store_true", help="keep the runs in --out")
    parser.add_argument("--out", type=Path, default=RESULTS / "classifier_recipe.json")
    parser.add_argument("--goal", default=FPB_GOAL, help="the data set's goal, as recorded")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="train nothing: join the runs of these result files (the same data set run in "
        "parallel, e.g. one process per seed) into --out",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args)
    if not args.data.is_file():
        sys.exit(f"benchmark data {args.data} not found; pass --data PATH to fpb_dev.csv")
    if set(args.variants) & set(TEACHER_VARIANTS) and args.teacher is None:
        sys.exit(f"the variants {list(TEACHER_VARIANTS)} need --teacher BASE_DIR")
    if DISTILLED in args.variants and TEACHER not in args.variants:  # its row is the reference
        args.variants.insert(args.variants.index(DISTILLED), TEACHER)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from threefold.core.labelled_data import read_labelled

    texts, labels = read_labelled(args.data)
    runs = json.loads(args.out.read_text())["runs"] if args.resume and args.out.is_file() else []
    done = {(r["variant"], r["seed"]) for r in runs}
    for seed in args.seeds:  # seed-major: a cut-short run still compares every lever
        for variant in args.variants:
            if (variant, seed) in done:
                continue
            if variant in TEACHER_VARIANTS:
                runs.append(run_teacher_variant(texts, labels, variant, seed, args))
            else:
                runs.append(run_variant(texts, labels, variant, seed))
            logger.info("%s", runs[-1])
            write(args, runs, partial=True)
    print_table(write(args, runs, partial=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
