"""Fine-tune, save, load and run a BERT text classifier (transformers Trainer underneath).

Behaviour on awkward input, by design:
- texts longer than `max_length` tokens are truncated (training and prediction), never an error;
- an empty or blank text is a `DataError` naming its position (a file error names file/line/column);
- training data with a single label, or eval labels the training data never had, is a `DataError`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import platform
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
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
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from threefold.core.base_model import resolve_base_model
from threefold.core.device import torch_device
from threefold.core.errors import ConfigError, DataError, ModelError
from threefold.core.metrics import classification_report
from threefold.core.tables import read_records
from threefold.core.training_config import TrainingConfig

logger = logging.getLogger(__name__)

META_FILE = "threefold_classifier.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
_META_KEYS = ("format_version", "labels", "base_model", "max_length", "version")


class TextClassifier:
    """A fine-tuned sequence classifier with its tokenizer, label list and training record.

    Build one with `train()` / `train_from_files()` or `load()`; the constructor only wraps
    already-loaded parts.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        labels: Sequence[str],
        *,
        base_model: str,
        max_length: int,
        metrics: dict | None = None,
        config: TrainingConfig | None = None,
        train_seconds: float | None = None,
        created_at: str | None = None,
        version: str | None = None,
        device: str = "cpu",
        quantized: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.base_model = base_model
        self.max_length = max_length
        self.metrics = metrics or {}
        self.config = config
        self.train_seconds = train_seconds
        self.created_at = created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.device = device
        self.quantized = quantized
        self.version = version or weights_fingerprint(model, self.labels)

    def __repr__(self) -> str:
        return (
            f"TextClassifier(labels={self.labels}, version={self.version!r}, "
            f"device={self.device!r}, quantized={self.quantized})"
        )

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
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
        texts, labels = _clean_examples(texts, labels, "training")
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
            eval_texts, eval_labels = _clean_examples(eval_texts, eval_labels, "eval")
            _check_eval_labels(eval_labels, label_names)
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
            result = trainer.train()
            train_seconds = time.perf_counter() - started
            model = trainer.model
            state = trainer.state

        model.to(device).eval()
        classifier = cls(
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

    @classmethod
    def train_from_files(
        cls,
        train_path: str | Path,
        eval_path: str | Path | None = None,
        *,
        base_model: str | None = None,
        config: TrainingConfig | None = None,
    ) -> TextClassifier:
        """`train()` on a CSV/JSON/JSONL file with `config.text_column` / `config.label_column`."""
        config = config or TrainingConfig()
        texts, labels = read_labelled(train_path, config.text_column, config.label_column)
        eval_texts = eval_labels = None
        if eval_path is not None:
            eval_texts, eval_labels = read_labelled(
                eval_path, config.text_column, config.label_column
            )
            unseen = sorted(set(eval_labels) - set(labels))
            if unseen:
                raise DataError(
                    f"eval labels {unseen} never occur in the training file {train_path} "
                    f"(its labels: {sorted(set(labels))}). Fix: add training rows with those "
                    "labels, or remove them from the eval file",
                    path=str(eval_path),
                    column=config.label_column,
                )
        return cls.train(
            texts,
            labels,
            eval_texts=eval_texts,
            eval_labels=eval_labels,
            base_model=base_model,
            config=config,
        )

    # --------------------------------------------------------------- inference
    def predict(self, texts: Sequence[str], *, batch_size: int = 64) -> list[str]:
        """The most likely label of each text."""
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        return [self.labels[i] for i in probabilities.argmax(axis=1)]

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities, float32 of shape (len(texts), len(labels)), columns in `labels`.

        Deterministic (eval mode, no dropout). Texts are batched by length for speed;
        text beyond `max_length` tokens is truncated. An empty text is a DataError.
        """
        texts = _check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; found {batch_size!r}")
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                encoded = self.tokenizer(
                    [texts[i] for i in batch],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**encoded).logits
                out[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write weights (safetensors), tokenizer and `threefold_classifier.json` into `path`."""
        if self.quantized:
            raise ModelError(
                "a quantized classifier cannot be saved; save the fp32 classifier and pass "
                "quantize=True (CLI: --quantize) when loading it"
            )
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"cannot save into {path}: it is a file, expected a directory")
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if not (path / WEIGHTS_FILE).is_file():
            raise ModelError(f"saving did not produce {path / WEIGHTS_FILE}; check disk space")
        meta = {
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "base_model": self.base_model,
            "max_length": self.max_length,
            "version": self.version,
            "created_at": self.created_at,
            "train_seconds": self.train_seconds,
            "training_config": self.config.to_dict() if self.config else None,
            "metrics": self.metrics,
            "libraries": _library_versions(),
        }
        partial = path / (META_FILE + ".partial")
        partial.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        partial.replace(path / META_FILE)
        logger.info("saved classifier %s to %s", self.version, path)

    @classmethod
    def load(
        cls, path: str | Path, *, quantize: bool = False, device: str | None = None
    ) -> TextClassifier:
        """Load a directory written by `save()`; ModelError names a missing or corrupt file.

        `quantize=True` applies int8 dynamic quantization to the linear layers (CPU only):
        faster inference for a small accuracy cost.
        """
        path = Path(path)
        meta = _read_meta(path)
        for name in (MODEL_CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise ModelError(
                    f"{path / name} is missing, so {path} is an incomplete classifier directory. "
                    "Fix: copy the whole directory again, or retrain with "
                    f"`threefold classifier train --out {path}`"
                )
        if quantize and device not in (None, "cpu"):
            raise ConfigError(
                f"int8 quantization runs on the CPU only; found device={device!r}. "
                "Fix: drop --quantize, or use device='cpu'"
            )
        device = "cpu" if quantize else torch_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise ModelError(
                f"cannot load the tokenizer files in {path}: {type(exc).__name__}: {exc}. "
                "Fix: copy the whole directory again, or retrain"
            ) from exc
        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(path))
        except Exception as exc:
            raise ModelError(
                f"cannot load the weights in {path / WEIGHTS_FILE} (corrupt or incomplete): "
                f"{type(exc).__name__}: {exc}. Fix: copy the whole directory again, or retrain"
            ) from exc
        labels = meta["labels"]
        saved_labels = [model.config.id2label.get(i) for i in range(model.config.num_labels)]
        if saved_labels != labels:
            raise ModelError(
                f"{path / MODEL_CONFIG_FILE} has labels {saved_labels} but {path / META_FILE} "
                f"has {labels}; the directory mixes two models. Fix: retrain or restore it"
            )
        found = weights_fingerprint(model, labels)
        if found != meta["version"]:
            raise ModelError(
                f"the weights in {path / WEIGHTS_FILE} do not match version {meta['version']!r} "
                f"recorded in {path / META_FILE} (found {found!r}): the file was changed or "
                "corrupted. Fix: copy the whole directory again, or retrain"
            )
        model.eval()
        if quantize:
            model = quantize_dynamic_int8(model)
        model.to(device)
        config = meta.get("training_config")
        try:
            config = TrainingConfig.from_dict(config) if isinstance(config, dict) else None
        except ConfigError as exc:
            raise ModelError(f"{path / META_FILE} has an unusable training_config: {exc}") from exc
        return cls(
            model,
            tokenizer,
            labels,
            base_model=meta["base_model"],
            max_length=int(meta["max_length"]),
            metrics=meta.get("metrics") or {},
            config=config,
            train_seconds=meta.get("train_seconds"),
            created_at=meta.get("created_at"),
            version=meta["version"],
            device=device,
            quantized=quantize,
        )


# ---------------------------------------------------------------------- helpers
def read_labelled(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str]]:
    """Texts and labels from a CSV/JSON/JSONL file; DataError names file, line and column."""
    records = read_records(
        path,
        required=(text_column, label_column),
        non_empty=(text_column,),
        hint="or pass --text-column NAME / --label-column NAME",
    )
    texts, labels = [], []
    for record in records:
        label = record.values[label_column]
        if label is None or not str(label).strip():
            raise DataError(
                f"expected a label in {label_column!r}, found {label!r}",
                path=str(path),
                line=record.line,
                column=label_column,
            )
        texts.append(str(record.values[text_column]))
        labels.append(str(label).strip())
    return texts, labels


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (kept, held_out): about `fraction` of each label held out, reproducibly.

    Every label with at least two examples keeps one or more on each side.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"fraction must be in [0, 1); found {fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    kept: list[int] = []
    held: list[int] = []
    for label in sorted(by_label):
        indices = np.array(by_label[label])
        rng.shuffle(indices)
        n_held = math.floor(len(indices) * fraction + 0.5)
        if fraction > 0 and len(indices) >= 2:
            n_held = min(max(n_held, 1), len(indices) - 1)
        elif len(indices) < 2:
            n_held = 0
        held.extend(indices[:n_held].tolist())
        kept.extend(indices[n_held:].tolist())
    return sorted(kept), sorted(held)


def weights_fingerprint(model: nn.Module, labels: Sequence[str]) -> str:
    """Short content hash of the weights and label list: the classifier's version."""
    digest = hashlib.sha256(json.dumps(list(labels)).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor) or tensor.is_quantized:
            continue
        digest.update(name.encode("utf-8"))
        digest.update(
            tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()[:12]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """int8 dynamic quantization of every nn.Linear (CPU inference)."""
    with warnings.catch_warnings():
        # torch marks torch.ao.quantization deprecated (moving to torchao); it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            model.to("cpu"), {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()


def _clean_examples(
    texts: Sequence[str], labels: Sequence[str], what: str
) -> tuple[list[str], list[str]]:
    texts = _check_texts(texts, what=what)
    if isinstance(labels, str):
        raise ConfigError(f"{what} labels must be a list of labels, not a single string")
    labels = [str(label).strip() if label is not None else "" for label in labels]
    if len(texts) != len(labels):
        raise ConfigError(
            f"{what} texts and labels differ in length: {len(texts)} texts, {len(labels)} labels"
        )
    if not texts:
        raise DataError(f"the {what} data is empty; expected labelled examples")
    blank = [i for i, label in enumerate(labels) if not label]
    if blank:
        raise DataError(f"{what} example #{blank[0]} has an empty label")
    return texts, labels


def _check_texts(texts: Sequence[str], *, what: str = "input") -> list[str]:
    if isinstance(texts, str):
        raise ConfigError(f"expected a list of texts, found a single string {texts[:40]!r}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{what} text #{i} is {type(text).__name__}, expected a string")
        if not text.strip():
            raise DataError(
                f"{what} text #{i} is empty; every text needs at least one non-blank character. "
                "Fix: drop or fill empty texts before classifying"
            )
    return texts


def _check_eval_labels(eval_labels: Sequence[str], label_names: Sequence[str]) -> None:
    unseen = sorted(set(eval_labels) - set(label_names))
    if unseen:
        raise DataError(
            f"eval labels {unseen} never occur in the training data (its labels: "
            f"{sorted(label_names)}). Fix: add training examples with those labels, or remove "
            "them from the eval data"
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


def _read_meta(path: Path) -> dict:
    if not path.is_dir():
        raise ModelError(
            f"classifier directory {path} does not exist or is not a directory. Fix: check the "
            f"path, or train one with `threefold classifier train --out {path}`"
        )
    meta_path = path / META_FILE
    if not meta_path.is_file():
        found = sorted(p.name for p in path.iterdir())[:10]
        raise ModelError(
            f"{meta_path} is missing, so {path} is not a threefold classifier (found {found}). "
            "Fix: point at a directory written by `threefold classifier train` or "
            "TextClassifier.save()"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{meta_path} is corrupt (not valid JSON: {exc}). "
            "Fix: copy the whole directory again, or retrain"
        ) from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path} is corrupt: expected a JSON object")
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise ModelError(
            f"{meta_path} lacks {missing}; it is corrupt or from another tool. "
            "Fix: copy the whole directory again, or retrain"
        )
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"{meta_path} has format_version {meta['format_version']!r}; this threefold "
            f"reads {FORMAT_VERSION}. Fix: retrain with this version"
        )
    labels = meta["labels"]
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
    ):
        raise ModelError(f"{meta_path} is corrupt: 'labels' must list two or more label names")
    return meta


def _library_versions() -> dict[str, str]:
    try:
        threefold_version = importlib.metadata.version("threefold")
    except importlib.metadata.PackageNotFoundError:
        threefold_version = "unknown"
    return {
        "threefold": threefold_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
