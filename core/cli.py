"""`threefold classifier ...`: train, evaluate and run text classifiers from the shell.

Results go to stdout as JSON; logs and progress bars go to stderr. Only click is imported at
module level: torch and transformers load inside the commands.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import click

from threefold.core.base_model import BASE_MODEL_ENV
from threefold.core.command_line import clean_errors, emit_json
from threefold.core.errors import ConfigError
from threefold.core.files import (
    FolderNotMovedError,
    move_dir_into_place,
    removed_on_error,
    staging_dir,
)
from threefold.core.training_config import TrainingConfig

_RECIPE = TrainingConfig()  # defaults of the fine-tune levers shown by --help
logger = logging.getLogger("threefold.classifier")


@click.group("classifier")
def classifier() -> None:
    """Train, evaluate and run BERT text classifiers (CSV/JSON/JSONL with text,label)."""


@classifier.command("train")
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Training file (CSV with a header, JSON or JSONL).",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(dir_okay=False),
    help="Eval file for early stopping; default: a stratified --eval-fraction of --train.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to save into; the classifier is written beside it and renamed into place "
    "whole at the end (a symlink gets it in its real folder; `.`, a folder above the current "
    "one or a mount point cannot be renamed: pass a new folder inside it). A model registry "
    "or one of its entries is never replaced: train elsewhere.",
)
@click.option(
    "--base",
    default=None,
    envvar=BASE_MODEL_ENV,
    help="Base model directory or hub id [default: MiniLM].",
)
@click.option("--epochs", type=float, default=4.0, show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--learning-rate", type=float, default=5e-5, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--max-length",
    type=int,
    default=128,
    show_default=True,
    help="Tokens per text; longer texts are truncated.",
)
@click.option(
    "--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (-1: off)."
)
@click.option(
    "--eval-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Held-out share of --train when no --eval is given (0: no early stopping).",
)
@click.option(
    "--patience",
    type=int,
    default=2,
    show_default=True,
    help="Evaluations without a better macro-F1 before stopping (0: never stop early).",
)
@click.option(
    "--class-weighting/--no-class-weighting",
    default=True,
    show_default=True,
    help="Weight the loss by inverse label frequency.",
)
@click.option(
    "--strategy",
    type=click.Choice(["auto", "contrastive", "fine-tune"]),
    default="auto",
    show_default=True,
    help="Training path. auto: contrastive (SetFit-style sentence pairs + logistic head) when "
    "the labels have fewer than --small-data-threshold examples on average, else fine-tune "
    "the whole model.",
)
@click.option(
    "--small-data-threshold",
    type=int,
    default=128,
    show_default=True,
    help="Examples per label below which --strategy auto trains contrastively.",
)
@click.option(
    "--layer-lr-decay",
    type=float,
    default=_RECIPE.layer_lr_decay,
    show_default=True,
    help="Each layer below the head learns at this factor of the one above (1: off).",
)
@click.option(
    "--adversarial-epsilon",
    type=float,
    default=_RECIPE.adversarial_epsilon,
    show_default=True,
    help="FGM: also fit word embeddings pushed this far along their gradient (0: off).",
)
@click.option(
    "--rdrop-alpha",
    type=float,
    default=_RECIPE.rdrop_alpha,
    show_default=True,
    help="R-Drop: weight of the KL between two dropout passes (0: off).",
)
@click.option(
    "--label-smoothing",
    type=float,
    default=_RECIPE.label_smoothing,
    show_default=True,
    help="Label smoothing of the cross-entropy (0: off).",
)
@click.option(
    "--group-by-length/--random-batches",
    default=_RECIPE.group_by_length,
    show_default=True,
    help="Batch texts of similar length together (less padding, 1.4-1.7x faster on CPU, as "
    "accurate within noise) or draw random batches.",
)
@click.option(
    "--checkpoint-average",
    type=click.IntRange(1, 20),
    default=_RECIPE.checkpoint_average,
    show_default=True,
    help="Average the weights of this many epoch checkpoints up to the best one; kept unless "
    "it scores lower on the eval set (1: off). Fine-tune path only.",
)
@click.option(
    "--augment-copies",
    type=click.IntRange(0, 20),
    default=_RECIPE.augment_copies,
    show_default=True,
    help="Add this many copies of each training text with words deleted and swapped at "
    "random (0: off). Fine-tune path only.",
)
@click.option(
    "--teacher",
    default=None,
    help="Distil from this teacher: a trained classifier directory, or a (larger) base model "
    "directory that is fine-tuned on the same data first. Fine-tune path only.",
)
@click.option(
    "--distill-alpha",
    type=float,
    default=_RECIPE.distill_alpha,
    show_default=True,
    help="Weight of the teacher's soft labels in the loss (the rest: the true labels).",
)
@click.option(
    "--distill-temperature",
    type=float,
    default=_RECIPE.distill_temperature,
    show_default=True,
    help="Softening of the teacher's and the student's probabilities.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace what a non-empty --out holds (swapped whole for the new classifier, once "
    "training succeeded).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@clean_errors
def train_command(
    train_path: str,
    eval_path: str | None,
    out: str,
    base: str | None,
    epochs: float,
    text_column: str,
    label_column: str,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    max_steps: int,
    eval_fraction: float,
    patience: int,
    class_weighting: bool,
    strategy: str,
    small_data_threshold: int,
    layer_lr_decay: float,
    adversarial_epsilon: float,
    rdrop_alpha: float,
    label_smoothing: float,
    group_by_length: bool,
    checkpoint_average: int,
    augment_copies: int,
    teacher: str | None,
    distill_alpha: float,
    distill_temperature: float,
    seed: int,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Train a classifier on TRAIN and save it to OUT; prints a JSON summary.

    The summary says which training path was taken and why, why training stopped, and lists
    warnings (an eval split too small to early-stop on, a model that predicts one class).
    """
    config = TrainingConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        eval_fraction=eval_fraction,
        seed=seed,
        early_stopping_patience=patience,
        class_weighting=class_weighting,
        max_steps=max_steps,
        strategy=strategy,
        small_data_threshold=small_data_threshold,
        layer_lr_decay=layer_lr_decay,
        adversarial_epsilon=adversarial_epsilon,
        rdrop_alpha=rdrop_alpha,
        label_smoothing=label_smoothing,
        group_by_length=group_by_length,
        checkpoint_average=checkpoint_average,
        augment_copies=augment_copies,
        teacher=teacher,
        distill_alpha=distill_alpha,
        distill_temperature=distill_temperature,
        text_column=text_column,
        label_column=label_column,
        output_progress=not no_progress,
    )
    out_dir = Path(out)
    staging = _prepare_out(out_dir, overwrite=overwrite)
    with removed_on_error(staging):  # Ctrl-C or an error: no half model left
        from threefold.core.classifier_training import train_classifier_from_files

        model = train_classifier_from_files(train_path, eval_path, base_model=base, config=config)
        model.save(staging)
    _publish(staging, out_dir, overwrite=overwrite)
    click.echo(
        f"training path: {model.metrics['strategy']}, because {model.metrics['strategy_reason']}",
        err=True,
    )
    click.echo(f"training stopped: {model.metrics['stop_reason']}", err=True)
    evaluation = model.metrics.get("eval") or {}
    emit_json(
        {
            "out": str(out_dir),
            "version": model.version,
            "labels": model.labels,
            "n_train": model.metrics.get("n_train"),
            "augmented_copies": model.metrics.get("augmented_copies"),
            "eval_source": model.metrics.get("eval_source"),
            "eval_accuracy": evaluation.get("accuracy"),
            "eval_macro_f1": evaluation.get("macro_f1"),
            "epochs_completed": model.metrics.get("epochs_completed"),
            "train_seconds": model.train_seconds,
            "device": model.device,
            "strategy": model.metrics.get("strategy"),
            "strategy_reason": model.metrics.get("strategy_reason"),
            "stop_reason": model.metrics.get("stop_reason"),
            "train_accuracy": model.metrics.get("train_accuracy"),
            "int8": model.metrics.get("int8"),
            "teacher": model.metrics.get("teacher"),
            "checkpoint_average": model.metrics.get("checkpoint_average"),
            "warnings": model.metrics.get("warnings", []),
        }
    )


def _prepare_out(out: Path, *, overwrite: bool) -> Path:
    """Check --out before training; return the empty folder beside it that the model is saved in.

    The model reaches --out by one rename at the end (`_publish`), so a failed or interrupted
    run leaves --out as it was. A symlinked --out stages beside its real folder; one that no
    rename can replace (`.`, a folder above it, a mount point) is refused here, and so is a
    model registry entry (`_refuse_registry_entry`).
    """
    _refuse_registry_entry(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a directory. Fix: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out} is a non-empty directory; pass --overwrite to replace the "
            "classifier there, or choose a new directory"
        )
    try:
        return staging_dir(out)
    except ConfigError as exc:
        raise ConfigError(f"--out {exc}") from exc
    except OSError as exc:
        raise ConfigError(
            f"--out {out} cannot be written: creating a folder beside it failed "
            f"({exc.strerror or exc}: {exc.filename}). Fix: choose a writable directory for --out"
        ) from exc


def _refuse_registry_entry(out: Path) -> None:
    """ConfigError when --out is a model registry, one of its entries or lies in an entry's
    versions folder: the plain classifier folder swapped in would delete the versions that apps
    serve and roll back to."""
    from threefold.core.registry import ModelRegistry, entry_around

    entry = entry_around(out)
    if entry is None:
        names = ModelRegistry(os.path.realpath(out)).names()
        if names:
            raise ConfigError(
                f"--out {out} is a model registry holding the models {names}; saving a "
                "classifier there would delete them all, so it is never replaced. Fix: choose "
                f"a new --out, such as {os.path.join(out, 'classifier')}"
            )
        return
    where = "is" if entry.path == Path(os.path.realpath(out)) else "lies in"
    root = entry.path.parent
    raise ConfigError(
        f"--out {out} {where} the model registry entry {entry.path} (state.json and versions "
        f"{entry.versions()}), not a classifier folder: saving there would delete the versions "
        "that apps serve and roll back to, so it is never replaced. Fix: choose a new --out "
        "outside the registry; to add a version to that model, use the command that publishes "
        f"it (e.g. `threefold alerts train --registry {root}`); `threefold models list "
        f"--registry {root}` shows its versions"
    )


def _publish(staging: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the saved model in `staging` to --out; when that fails, say where it was kept.

    An --out that became a registry entry while this run trained is refused (the model stays
    in `staging`, which the error names)."""
    try:
        _refuse_registry_entry(out)
    except ConfigError as exc:
        raise ConfigError(f"{exc}. The trained classifier is kept at {staging}") from exc
    try:
        move_dir_into_place(staging, out, replace=overwrite)
    except FolderNotMovedError as exc:
        old = f"; the classifier --out held before is at {exc.old_kept}" if exc.old_kept else ""
        if exc.target_taken:
            raise ConfigError(
                f"--out {out} was filled by another run while this one trained, so this run's "
                f"classifier was saved to {exc.kept} instead{old}. Fix: keep the one you want in "
                "--out, or pass --overwrite to replace it"
            ) from exc
        why = exc.reason.strerror or exc.reason
        raise ConfigError(
            f"cannot move the trained classifier into --out {out} ({why}), so it was "
            f"saved to {exc.kept} instead{old}. Fix: move it to --out yourself, or train again "
            "with another --out"
        ) from exc


@classifier.command("eval")
@click.option(
    "--model", "model_dir", required=True, type=click.Path(), help="Saved classifier directory."
)
@click.option(
    "--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Labelled file."
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--quantize/--no-quantize",
    default=None,
    help="int8 dynamic quantization (CPU inference) [default: the decision recorded at "
    "training time: int8 on the CPU when it cost <= 0.5 point of eval accuracy].",
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available].")
@clean_errors
def eval_command(
    model_dir: str,
    data_path: str,
    text_column: str,
    label_column: str,
    quantize: bool | None,
    batch_size: int,
    device: str | None,
) -> None:
    """Score a saved classifier on labelled DATA; prints one JSON object.

    Keys: n, accuracy, macro_f1, per_class (precision/recall/f1/support), confusion
    (matrix[i][j] = true labels[i] predicted as labels[j]), plus sentences_per_second.
    """
    from threefold.core.classifier import TextClassifier
    from threefold.core.errors import DataError
    from threefold.core.evaluation import classification_report
    from threefold.core.labelled_data import read_labelled

    texts, labels = read_labelled(data_path, text_column, label_column)
    model = TextClassifier.load(model_dir, quantize=quantize, device=device)
    unknown = sorted(set(labels) - set(model.labels))
    if unknown:
        raise DataError(
            f"labels {unknown} are not among the classifier's labels {model.labels}; it can "
            "never predict them. Fix: check --label-column, or drop those rows",
            path=data_path,
            column=label_column,
        )
    started = time.perf_counter()
    predicted = model.predict(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    report = classification_report(labels, predicted, labels=model.labels)
    logger.info("scored %d texts in %.2f s", len(texts), seconds)
    emit_json(
        {
            **report,
            "sentences_per_second": round(len(texts) / seconds, 2) if seconds > 0 else None,
            "model_version": model.version,
            "quantized": model.quantized,
            "device": model.device,
        }
    )


@classifier.command("predict")
@click.option(
    "--model", "model_dir", required=True, type=click.Path(), help="Saved classifier directory."
)
@click.option(
    "--quantize/--no-quantize",
    default=None,
    help="int8 dynamic quantization (CPU inference) [default: the decision recorded at "
    "training time: int8 on the CPU when it cost <= 0.5 point of eval accuracy].",
)
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available].")
@click.argument("texts", nargs=-1)
@clean_errors
def predict_command(
    model_dir: str, quantize: bool | None, device: str | None, texts: tuple[str, ...]
) -> None:
    """Classify each TEXT (or, with none given, each non-blank stdin line).

    Prints one JSON line per text: {"text", "label", "probabilities": {label: p}}.
    """
    if not texts:
        if sys.stdin is None or sys.stdin.isatty():
            raise click.UsageError("give one or more TEXT arguments, or pipe lines on stdin")
        texts = tuple(line for line in sys.stdin.read().splitlines() if line.strip())
        if not texts:
            raise click.UsageError("stdin held no text to classify")
    from threefold.core.classifier import TextClassifier

    model = TextClassifier.load(model_dir, quantize=quantize, device=device)
    probabilities = model.predict_proba(list(texts))
    for text, row in zip(texts, probabilities, strict=True):
        best = int(row.argmax())
        emit_json(
            {
                "text": text,
                "label": model.labels[best],
                "probabilities": {
                    label: round(float(p), 6) for label, p in zip(model.labels, row, strict=True)
                },
            }
        )
