"""Train a TextClassifier: pick the path (small data: contrastive), fine-tune, check, log why.

Large enough data goes through the transformers Trainer (weighted loss, early stopping on eval
macro-F1; with `teacher`, distilled from a larger model first fine-tuned on the same split);
small data through `small_data` (SetFit style). Every run logs the path chosen and
why, why training stopped, and warns when the eval split is too small to early-stop on or the
model predicts fewer labels than it was trained on (prediction collapse when half or more are
never predicted, underfitting when a few are).

Training data with a single label, or eval labels the training data never had, is a
`DataError`; texts longer than `max_length` tokens are truncated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from threefold.core.base_model import (
    clear_embedding_index_errors,
    load_pretrained,
    resolve_base_model,
)
from threefold.core.classifier import (
    META_FILE,
    TextClassifier,
    int8_copy,
    int8_decision,
    without_progress_bars,
)
from threefold.core.device import torch_device
from threefold.core.errors import ConfigError, DataError
from threefold.core.evaluation import classification_report
from threefold.core.labelled_data import (
    check_eval_labels,
    clean_examples,
    read_labelled,
    stratified_split,
)
from threefold.core.small_data import (
    CONTRASTIVE,
    choose_strategy,
    train_contrastive,
    unused_schedule_note,
)
from threefold.core.training_config import FINE_TUNE_LEVERS, TrainingConfig
from threefold.core.training_recipe import (
    CheckpointAverage,
    EmbeddingAdversary,
    class_weights,
    classification_loss,
    distillation_loss,
    layerwise_param_groups,
    rdrop_loss,
    with_augmented_copies,
)
from threefold.core.training_rng import keeps_global_rngs

logger = logging.getLogger(__name__)

MIN_EVAL_PER_LABEL = 10
"""Fewer eval examples of some label than this makes early stopping a coin toss (warned)."""

TEACHER_KEY = "teacher_probs"
"""The batch key of a training example's teacher probabilities (distillation)."""


@keeps_global_rngs
@clear_embedding_index_errors
def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence[str] | None = None,
    base_model: str | None = None,
    config: TrainingConfig | None = None,
) -> TextClassifier:
    """Train a classifier on `texts` / `labels` from `base_model` (default: packaged MiniLM).

    Without an eval set, a stratified `config.eval_fraction` of the data is held out.
    The path follows `config.strategy` (auto: contrastive below `small_data_threshold` examples
    per label). On the fine-tune path, with an eval set (given or split off) the model is
    evaluated each epoch, training stops early when eval macro-F1 stops improving, and the best
    checkpoint is kept. `metrics` records the path and why, the stop reason and any warnings.
    """
    config = config or TrainingConfig()
    texts, labels = clean_examples(texts, labels, "training")
    label_names = sorted(set(labels))
    if len(label_names) < 2:
        raise DataError(
            f"the training data has a single label {label_names[0]!r} in all {len(texts)} "
            "rows; a classifier needs examples of at least two labels. Fix: add rows of "
            "other labels, or check that --label-column names the label column"
        )
    if (eval_texts is None) != (eval_labels is None):
        raise ConfigError("pass both eval_texts and eval_labels, or neither")
    eval_source = None
    if eval_texts is not None:
        eval_texts, eval_labels = clean_examples(eval_texts, eval_labels, "eval")
        check_eval_labels(eval_labels, label_names)
        eval_source = "eval set"
    elif config.eval_fraction > 0:
        train_idx, eval_idx = stratified_split(labels, config.eval_fraction, config.seed)
        if eval_idx:
            eval_texts = [texts[i] for i in eval_idx]
            eval_labels = [labels[i] for i in eval_idx]
            texts = [texts[i] for i in train_idx]
            labels = [labels[i] for i in train_idx]
            eval_source = f"{config.eval_fraction:g} stratified split of the training data"
        else:
            logger.warning(
                "too few examples per label to hold out an eval split; training without "
                "early stopping"
            )

    choice = choose_strategy(labels, config)
    logger.info("training path: %s, because %s", choice.strategy, choice.reason)
    if config.teacher is not None and choice.strategy == CONTRASTIVE:
        raise ConfigError(
            f"a teacher ({config.teacher}) distils on the fine-tune path only, and this data "
            f"takes the contrastive path ({choice.reason}). Fix: pass --strategy fine-tune to "
            "distil anyway, or drop --teacher"
        )
    notes: list[str] = []
    fine_tune_only = config.changed(FINE_TUNE_LEVERS)
    if fine_tune_only and choice.strategy == CONTRASTIVE:
        notes.append(
            f"{fine_tune_only} apply to the fine-tune path only and were not used: this data "
            f"takes the contrastive path ({choice.reason}). Fix: pass --strategy fine-tune to "
            "use them"
        )
        logger.warning("%s", notes[-1])
    schedule_note = unused_schedule_note(config)
    if schedule_note and choice.strategy == CONTRASTIVE:
        notes.append(schedule_note)
        logger.warning("%s", notes[-1])
    augmented = 0
    if config.augment_copies and choice.strategy != CONTRASTIVE:
        before = len(texts)
        texts, labels = with_augmented_copies(texts, labels, config.augment_copies, config.seed)
        augmented = len(texts) - before
        logger.info(
            "augmentation: %d perturbed copies added to %d training texts", augmented, before
        )
    device = torch_device(None)
    base = resolve_base_model(base_model)
    logger.info(
        "training on %d examples (%s) from %s, eval %s, labels %s, device %s",
        len(texts),
        dict(sorted(Counter(labels).items())),
        base,
        f"{len(eval_texts)} examples from the {eval_source}" if eval_texts else "none",
        label_names,
        device,
    )
    started = time.perf_counter()
    if choice.strategy == CONTRASTIVE:
        with _quiet_unless_progress(config):
            model, tokenizer, record = train_contrastive(
                texts, labels, label_names, base, config, device
            )
        run = {"epochs_completed": None, "best_step": None, **record}
    else:
        split = _Split(texts, labels, eval_texts, eval_labels, label_names)
        soft_targets = teacher = None
        if config.teacher is not None:
            soft_targets, teacher = _teacher_targets(split, config, device)
        model, tokenizer, run = _fine_tune(split, base, config, device, notes, soft_targets)
        if teacher is not None:
            run["teacher"] = teacher
    train_seconds = time.perf_counter() - started
    logger.info("training stopped: %s", run["stop_reason"])

    model.to(device).eval()
    classifier = TextClassifier(
        model,
        tokenizer,
        label_names,
        base_model=base,
        max_length=config.max_length,
        config=config,
        train_seconds=round(train_seconds, 2),
        device=device,
    )
    report = None
    if eval_texts:
        report = classification_report(
            eval_labels, classifier.predict(eval_texts), labels=label_names
        )
        logger.info(
            "eval (%d examples): accuracy %.4f, macro-F1 %.4f",
            report["n"],
            report["accuracy"],
            report["macro_f1"],
        )
    int8 = measure_int8(classifier, eval_texts, eval_labels, report)
    train_accuracy, collapse = check_prediction_collapse(
        classifier, texts, labels, seed=config.seed
    )
    if collapse:
        notes.append(collapse)
        logger.warning("%s", collapse)
    classifier.metrics = {
        "eval": report,
        "eval_source": eval_source,
        "n_train": len(texts),
        "augmented_copies": augmented,
        "strategy": choice.strategy,
        "strategy_reason": choice.reason,
        "stop_reason": run["stop_reason"],
        "epochs_completed": run["epochs_completed"],
        "steps": run["steps"],
        "best_step": run["best_step"],
        "train_loss": run["train_loss"],
        "train_accuracy": train_accuracy,
        "warnings": notes,
        "int8": int8,
    }
    if "pairs" in run:
        classifier.metrics["contrastive_pairs"] = run["pairs"]
    for key in ("teacher", "checkpoint_average"):
        if key in run:
            classifier.metrics[key] = run[key]
    return classifier


def measure_int8(
    classifier: TextClassifier,
    eval_texts: Sequence[str],
    eval_labels: Sequence[str],
    report: dict | None,
) -> dict | None:
    """Eval accuracy of an int8 copy and whether it serves by default on the CPU (no eval: None)."""
    if not eval_texts or report is None:
        return None
    predicted = int8_copy(classifier).predict(eval_texts)
    accuracy = classification_report(eval_labels, predicted, labels=classifier.labels)["accuracy"]
    return int8_decision(
        {"label": report["accuracy"]}, {"label": accuracy}, {"label": len(eval_texts)}
    )


def check_prediction_collapse(
    classifier: TextClassifier,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int = 0,
    sample: int = 2000,
) -> tuple[float, str | None]:
    """(training accuracy, warning or None): warns when some label is never predicted.

    A model that predicts at most half of the labels it was trained on, on its own training
    data, has collapsed (the classic small-data failure: every row one class at p ~ 1/k). One
    that misses only a few labels (many labels, too few steps) underfits those.
    """
    indices = np.arange(len(texts))
    if len(indices) > sample:
        indices = np.random.default_rng(seed).choice(indices, sample, replace=False)
    subset = [texts[i] for i in indices]
    truth = [labels[i] for i in indices]
    predicted = classifier.predict(subset)
    accuracy = round(float(np.mean([p == y for p, y in zip(predicted, truth, strict=True)])), 4)
    never = sorted(set(classifier.labels) - set(predicted))
    if not never:
        return accuracy, None
    n_labels = len(classifier.labels)
    if len(never) < n_labels / 2:
        return accuracy, (
            f"labels never predicted: on its own {len(subset)} training examples the model "
            f"predicts {n_labels - len(never)} of its {n_labels} labels and never {never} "
            f"(training accuracy {accuracy:.2f}); it underfits them. Fix: train for more "
            "epochs or steps, or add examples of those labels"
        )
    shown = dict(sorted(Counter(predicted).items()))
    return accuracy, (
        f"prediction collapse: on its own {len(subset)} training examples the model predicts "
        f"only {shown} and never {never} (training accuracy {accuracy:.2f}); it has not learned "
        "to tell the labels apart. Fix: add examples (at least 8 per label), use "
        "--strategy contrastive for small data, or train for more steps"
    )


def train_classifier_from_files(
    train_path: str | Path,
    eval_path: str | Path | None = None,
    *,
    base_model: str | None = None,
    config: TrainingConfig | None = None,
) -> TextClassifier:
    """`train_classifier()` on a CSV/JSON/JSONL file (`config.text_column` / `.label_column`)."""
    config = config or TrainingConfig()
    texts, labels = read_labelled(train_path, config.text_column, config.label_column)
    eval_texts = eval_labels = None
    if eval_path is not None:
        eval_texts, eval_labels = read_labelled(eval_path, config.text_column, config.label_column)
        unseen = sorted(set(eval_labels) - set(labels))
        if unseen:
            raise DataError(
                f"eval labels {unseen} never occur in the training file {train_path} "
                f"(its labels: {sorted(set(labels))}). Fix: add training rows with those "
                "labels, or remove them from the eval file",
                path=str(eval_path),
                column=config.label_column,
            )
    return train_classifier(
        texts,
        labels,
        eval_texts=eval_texts,
        eval_labels=eval_labels,
        base_model=base_model,
        config=config,
    )


def _quiet_unless_progress(config: TrainingConfig) -> contextlib.AbstractContextManager:
    """--no-progress: no "Loading weights" / "Writing model shards" bars either."""
    return contextlib.nullcontext() if config.output_progress else without_progress_bars()


@dataclass(frozen=True)
class _Split:
    """The training examples, the eval examples (None: no early stopping) and the label names."""

    texts: Sequence[str]
    labels: Sequence[str]
    eval_texts: Sequence[str] | None
    eval_labels: Sequence[str] | None
    label_names: list[str]


def _fine_tune(
    split: _Split,
    base: str,
    config: TrainingConfig,
    device: str,
    notes: list[str],
    soft_targets: np.ndarray | None = None,
) -> tuple[nn.Module, object, dict]:
    """The transformers Trainer path; returns (model, tokenizer, run record with stop_reason).

    `soft_targets` (a teacher's probabilities per training text) turn on the distillation loss.
    """
    texts, labels, label_names = split.texts, split.labels, split.label_names
    eval_texts, eval_labels = split.eval_texts, split.eval_labels
    with _quiet_unless_progress(config):
        tokenizer, model = _load_base(base, label_names, config)
    label_ids = {label: i for i, label in enumerate(label_names)}
    train_data = _EncodedExamples(
        tokenizer, texts, labels, label_ids, config.max_length, soft_targets
    )
    eval_data = (
        _EncodedExamples(tokenizer, eval_texts, eval_labels, label_ids, config.max_length)
        if eval_texts
        else None
    )
    if eval_data is not None and config.early_stopping_patience > 0:
        fewest = min(Counter(eval_labels).get(label, 0) for label in label_names)
        if fewest < MIN_EVAL_PER_LABEL:
            notes.append(
                f"the eval set for early stopping has {len(eval_labels)} examples ({fewest} of "
                f"the rarest label): too few to early-stop on, since one example moves macro-F1 "
                f"by several points and training may stop on noise. Fix: pass --eval FILE with "
                f">= {MIN_EVAL_PER_LABEL} examples per label, or --patience 0 to train all epochs"
            )
            logger.warning("%s", notes[-1])
    weights = class_weights(labels, label_names) if config.class_weighting else None
    averager = None
    if config.checkpoint_average > 1:
        # the best epoch lies at most `patience` epochs before the last (any, without it)
        after_best = config.early_stopping_patience or math.ceil(config.epochs)
        keep = config.checkpoint_average + after_best
        averager = CheckpointAverage(config.checkpoint_average, keep)
    with tempfile.TemporaryDirectory(prefix="threefold-train-") as workdir:
        trainer = _build_trainer(
            model,
            tokenizer,
            train_data,
            eval_data,
            weights,
            label_names,
            config,
            workdir,
            device,
        )
        if averager is not None:
            trainer.add_callback(_EpochSnapshots(averager))
        with _quiet_unless_progress(config):
            result = trainer.train()
            state = trainer.state
            run = {
                "stop_reason": describe_stop(state, config),
                "epochs_completed": round(float(state.epoch or 0.0), 4),
                "steps": int(state.global_step),
                "best_step": getattr(state, "best_global_step", None),
                "train_loss": float(result.training_loss),
            }
            if averager is not None:
                run["checkpoint_average"] = _use_checkpoint_average(trainer, averager)
    return trainer.model, tokenizer, run


class _EpochSnapshots(TrainerCallback):
    """Hands the model's weights at the end of each epoch to a `CheckpointAverage`."""

    def __init__(self, averager: CheckpointAverage) -> None:
        self.averager = averager

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.averager.snapshot(model, int(state.global_step))


def _use_checkpoint_average(trainer: Trainer, averager: CheckpointAverage) -> dict:
    """Load the average of the epoch checkpoints up to the best one into the trainer's model,
    unless it scores a lower eval macro-F1 than the best checkpoint; returns the record."""
    state = trainer.state
    has_eval = trainer.eval_dataset is not None
    found = averager.average(getattr(state, "best_global_step", None) if has_eval else None)
    if found is None:
        reason = "fewer than two epoch checkpoints up to the best one"
        logger.info("checkpoint averaging not used: %s", reason)
        return {"used": False, "reason": reason}
    averaged, steps = found
    model = trainer.model
    if not has_eval:
        model.load_state_dict(averaged)
        logger.info("checkpoint averaging: the weights of steps %s averaged (no eval set)", steps)
        return {"used": True, "steps": steps, "reason": "no eval set: the last epochs averaged"}
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_f1 = state.best_metric
    model.load_state_dict(averaged)
    f1 = float(trainer.evaluate()["eval_macro_f1"])
    used = best_f1 is None or f1 >= best_f1
    if not used:
        model.load_state_dict(best)
    reason = (
        f"the average of steps {steps} scores eval macro-F1 {f1:.4f} against the best "
        f"checkpoint's {'n/a' if best_f1 is None else f'{best_f1:.4f}'}: "
        + ("kept the average" if used else "kept the best checkpoint")
    )
    logger.info("checkpoint averaging: %s", reason)
    return {
        "used": used,
        "steps": steps,
        "eval_macro_f1": f1,  # unrounded: the decision compares these two exactly
        "best_eval_macro_f1": None if best_f1 is None else float(best_f1),
        "reason": reason,
    }


def _teacher_targets(split: _Split, config: TrainingConfig, device: str) -> tuple[np.ndarray, dict]:
    """The teacher's probabilities for the training texts (label_names order) and its record.

    `config.teacher` is a classifier directory (used as it is; its labels must be these) or a
    base model, fine-tuned here first with the same recipe, data and eval split.
    """
    label_names = split.label_names
    started = time.perf_counter()
    if (Path(config.teacher) / META_FILE).is_file():
        teacher = TextClassifier.load(config.teacher, quantize=False, device=device)
        if sorted(teacher.labels) != label_names:
            raise ConfigError(
                f"the teacher {config.teacher} was trained on labels {sorted(teacher.labels)}, "
                f"but this data has labels {label_names}. Fix: pass a teacher trained on the "
                "same labels, or a base model directory to fine-tune as the teacher"
            )
        stop_reason = "loaded, not trained here"
    else:
        base = resolve_base_model(config.teacher)
        logger.info("distillation: fine-tuning the teacher %s on the same data first", base)
        teacher_config = dataclasses.replace(config, teacher=None, strategy="fine-tune")
        model, tokenizer, run = _fine_tune(split, base, teacher_config, device, [])
        model.to(device).eval()
        teacher = TextClassifier(
            model,
            tokenizer,
            label_names,
            base_model=base,
            max_length=config.max_length,
            device=device,
        )
        stop_reason = run["stop_reason"]
    columns = [teacher.labels.index(label) for label in label_names]
    probabilities = teacher.predict_proba(split.texts)[:, columns]
    report = (
        classification_report(
            split.eval_labels, teacher.predict(split.eval_texts), labels=label_names
        )
        if split.eval_texts
        else None
    )
    record = {
        "source": config.teacher,
        "base_model": teacher.base_model,
        "stop_reason": stop_reason,
        "eval": report,
        "alpha": config.distill_alpha,
        "temperature": config.distill_temperature,
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info(
        "distillation teacher ready in %.0fs: eval %s",
        record["seconds"],
        None if report is None else {k: report[k] for k in ("accuracy", "macro_f1")},
    )
    return probabilities, record


def describe_stop(state, config: TrainingConfig) -> str:
    """Why the Trainer stopped, in words: early stopping, max_steps or all epochs done."""
    epochs = round(float(state.epoch or 0.0), 2)
    if state.global_step < state.max_steps:
        best = state.best_metric
        return (
            f"early stopping after epoch {epochs:g} of {config.epochs:g} (step "
            f"{state.global_step} of {state.max_steps}): eval macro-F1 did not improve for "
            f"{config.early_stopping_patience} evaluation(s); kept the best checkpoint (step "
            f"{getattr(state, 'best_global_step', None)}, macro-F1 "
            f"{'n/a' if best is None else f'{best:.4f}'})"
        )
    if config.max_steps > 0:
        return f"reached max_steps {config.max_steps} ({epochs:g} epochs)"
    return f"completed all {config.epochs:g} epochs ({state.global_step} steps)"


def _load_base(base: str, label_names: list[str], config: TrainingConfig):
    transformers.set_seed(config.seed)
    return load_pretrained(
        base,
        AutoModelForSequenceClassification,
        config.max_length,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={label: i for i, label in enumerate(label_names)},
    )


class _EncodedExamples(torch.utils.data.Dataset):
    """Tokenized (truncated, unpadded) examples; padding happens per batch in the collator.

    With `soft_targets`, each example also carries its teacher probabilities (`teacher_probs`).
    """

    def __init__(
        self,
        tokenizer,
        texts,
        labels,
        label_ids: dict[str, int],
        max_length: int,
        soft_targets: np.ndarray | None = None,
    ):
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.label_ids = [label_ids[label] for label in labels]
        self.soft_targets = soft_targets

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, index: int) -> dict:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.label_ids[index]
        if self.soft_targets is not None:
            item[TEACHER_KEY] = self.soft_targets[index].tolist()
        return item


class _RecipeTrainer(Trainer):
    """Trainer with the recipe's loss (class weights, label smoothing, R-Drop, distillation),
    FGM training steps and layer-wise learning-rate decay (see `core.training_recipe`)."""

    def __init__(
        self,
        *args,
        class_weights: torch.Tensor | None = None,
        recipe: TrainingConfig,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.recipe = recipe
        self._adversary = (
            EmbeddingAdversary(self.model, recipe.adversarial_epsilon)
            if recipe.adversarial_epsilon > 0
            else None
        )

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.recipe.layer_lr_decay < 1.0:
            opt_model = self.model if model is None else model
            groups = layerwise_param_groups(
                opt_model,
                self.args.learning_rate,
                self.recipe.layer_lr_decay,
                self.args.weight_decay,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                self.args, opt_model
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        teacher = inputs.get(TEACHER_KEY)
        features = {k: v for k, v in inputs.items() if k not in ("labels", TEACHER_KEY)}
        outputs = model(**features)
        logits = outputs.logits
        weight = None
        if self.class_weights is not None:
            weight = self.class_weights.to(device=logits.device, dtype=logits.dtype)

        def loss_of(scores: torch.Tensor) -> torch.Tensor:
            loss = classification_loss(scores, labels, weight, self.recipe.label_smoothing)
            if teacher is None:
                return loss
            alpha = self.recipe.distill_alpha
            soft = distillation_loss(scores, teacher, self.recipe.distill_temperature)
            return (1 - alpha) * loss + alpha * soft

        if self.recipe.rdrop_alpha > 0 and model.training:
            loss = rdrop_loss(logits, model(**features).logits, loss_of, self.recipe.rdrop_alpha)
        else:
            loss = loss_of(logits)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._adversary is not None and self._adversary.attack():
            try:
                with self.compute_loss_context_manager():
                    adversarial = self.compute_loss(model, self._prepare_inputs(inputs))
                self.accelerator.backward(adversarial / self.current_gradient_accumulation_steps)
            finally:
                self._adversary.restore()
        return loss


class _LogToStderr(TrainerCallback):
    """Training logs (loss, eval metrics) go to the logger, not stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items()}
            shown.pop("total_flos", None)
            logger.info("step %d: %s", state.global_step, shown)


class _ProgressBar(ProgressCallback):
    """Trainer's tqdm bars (stderr) with logs routed to the logger instead of stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        _LogToStderr().on_log(args, state, control, logs=logs, **kwargs)


def _build_trainer(
    model, tokenizer, train_data, eval_data, weights, label_names, config, workdir, device
) -> Trainer:
    has_eval = eval_data is not None
    strategy = "epoch" if has_eval else "no"
    args = TrainingArguments(
        output_dir=workdir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 64),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        weight_decay=config.weight_decay,
        warmup_steps=float(config.warmup_ratio),
        eval_strategy=strategy,
        save_strategy=strategy,
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model="macro_f1" if has_eval else None,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=50,
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        dataloader_pin_memory=device.startswith("cuda"),
        disable_tqdm=not config.output_progress,
        remove_unused_columns=False,  # keep the teacher's probabilities; compute_loss drops them
    )

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        report = classification_report(
            [label_names[i] for i in prediction.label_ids],
            [label_names[i] for i in np.asarray(logits).argmax(axis=-1)],
            labels=label_names,
        )
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}

    callbacks: list[TrainerCallback] = []
    if has_eval and config.early_stopping_patience > 0:
        callbacks.append(
            EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)
        )
    trainer = _RecipeTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics if has_eval else None,
        callbacks=callbacks,
        class_weights=weights,
        recipe=config,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_ProgressBar() if config.output_progress else _LogToStderr())
    return trainer
