"""Fine-tune a TextClassifier: the transformers Trainer with weighted loss, early stopping, logs.

Training data with a single label, or eval labels the training data never had, is a
`DataError`; texts longer than `max_length` tokens are truncated.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from threefold.core.base_model import resolve_base_model
from threefold.core.classifier import TextClassifier, without_progress_bars
from threefold.core.device import torch_device
from threefold.core.errors import ConfigError, DataError, ModelError
from threefold.core.evaluation import classification_report
from threefold.core.labelled_data import (
    check_eval_labels,
    clean_examples,
    read_labelled,
    stratified_split,
)
from threefold.core.training_config import TrainingConfig

logger = logging.getLogger(__name__)


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence[str] | None = None,
    base_model: str | None = None,
    config: TrainingConfig | None = None,
) -> TextClassifier:
    """Fine-tune `base_model` (default: the packaged MiniLM) on `texts` / `labels`.

    Without an eval set, a stratified `config.eval_fraction` of the data is held out.
    With an eval set (given or split off) the model is evaluated each epoch, training stops
    early when eval macro-F1 stops improving, and the best checkpoint is kept.
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

    device = torch_device(None)
    base = resolve_base_model(base_model)
    # --no-progress: no "Loading weights" / "Writing model shards" bars either
    quiet = contextlib.nullcontext if config.output_progress else without_progress_bars
    with quiet():
        tokenizer, model = _load_base(base, label_names, config)
    label_ids = {label: i for i, label in enumerate(label_names)}
    train_data = _EncodedExamples(tokenizer, texts, labels, label_ids, config.max_length)
    eval_data = (
        _EncodedExamples(tokenizer, eval_texts, eval_labels, label_ids, config.max_length)
        if eval_texts
        else None
    )
    weights = class_weights(labels, label_names) if config.class_weighting else None
    logger.info(
        "fine-tuning %s on %d examples (%s), eval %s, labels %s, device %s",
        base,
        len(texts),
        dict(sorted(Counter(labels).items())),
        f"{len(eval_texts)} examples from the {eval_source}" if eval_data else "none",
        label_names,
        device,
    )

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
        started = time.perf_counter()
        with quiet():
            result = trainer.train()
        train_seconds = time.perf_counter() - started
        model = trainer.model
        state = trainer.state

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
    classifier.metrics = {
        "eval": report,
        "eval_source": eval_source,
        "n_train": len(texts),
        "epochs_completed": round(float(state.epoch or 0.0), 4),
        "steps": int(state.global_step),
        "best_step": getattr(state, "best_global_step", None),
        "train_loss": float(result.training_loss),
    }
    return classifier


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


def _load_base(base: str, label_names: list[str], config: TrainingConfig):
    transformers.set_seed(config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)},
        )
    except OSError as exc:
        raise ModelError(f"cannot load base model {base!r}: {exc}") from exc
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and config.max_length > limit:
        raise ConfigError(
            f"max_length {config.max_length} exceeds what base model {base!r} supports "
            f"({limit} tokens). Fix: pass --max-length {limit} or less"
        )
    return tokenizer, model


def class_weights(labels: Sequence[str], label_names: Sequence[str]) -> torch.Tensor:
    """'Balanced' weights n / (k * count): rare labels weigh more in the loss."""
    counts = Counter(labels)
    n, k = len(labels), len(label_names)
    return torch.tensor([n / (k * counts[label]) for label in label_names], dtype=torch.float32)


class _EncodedExamples(torch.utils.data.Dataset):
    """Tokenized (truncated, unpadded) examples; padding happens per batch in the collator."""

    def __init__(self, tokenizer, texts, labels, label_ids: dict[str, int], max_length: int):
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.label_ids = [label_ids[label] for label in labels]

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, index: int) -> dict:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.label_ids[index]
        return item


class _WeightedLossTrainer(Trainer):
    """Trainer whose loss is cross-entropy with per-class weights (for skewed labels)."""

    def __init__(self, *args, class_weights: torch.Tensor | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        logits = outputs.logits
        weight = None
        if self.class_weights is not None:
            weight = self.class_weights.to(device=logits.device, dtype=logits.dtype)
        loss = nn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), labels.view(-1), weight=weight
        )
        return (loss, outputs) if return_outputs else loss


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
    trainer = _WeightedLossTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics if has_eval else None,
        callbacks=callbacks,
        class_weights=weights,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_ProgressBar() if config.output_progress else _LogToStderr())
    return trainer
