"""A fine-tuned BERT text classifier: predict, and save/load its self-describing directory.

A classifier directory holds the weights (safetensors), the tokenizer and
`threefold_classifier.json` (labels, base model, max length, version, architecture, training
record). Two architectures share this contract: a transformers sequence classifier (the
fine-tune path; `AutoModelForSequenceClassification.from_pretrained(dir)` loads it) and a
sentence embedder with a linear head (the small-data path; see `embedding_classifier`).
Training lives in `classifier_training`.

Behaviour on awkward input, by design:
- texts longer than `max_length` tokens are truncated, never an error;
- an empty or blank text is a `DataError` naming its position.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from threefold.core.embedding_classifier import ARCHITECTURE as EMBEDDING_ARCHITECTURE
from threefold.core.embedding_classifier import EmbeddingClassifier
from threefold.core.errors import ConfigError, ModelError
from threefold.core.files import write_json_atomic
from threefold.core.labelled_data import check_texts
from threefold.core.model_directory import (
    check_version,
    inference_device,
    quantize_dynamic_int8,
    read_meta,
    ready_for_inference,
    record_from_meta,
    training_record,
    weights_fingerprint,
)
from threefold.core.training_config import TrainingConfig

INT8_MAX_ACCURACY_DROP = 0.005  # int8 serves by default when eval accuracy drops no more
INT8_MIN_EVAL_TEXTS = 200  # ... measured on at least this many eval texts (1 error = 0.5 point)

logger = logging.getLogger(__name__)

META_FILE = "threefold_classifier.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
SEQUENCE_ARCHITECTURE = "sequence-classification"


class TextClassifier:
    """A fine-tuned sequence classifier with its tokenizer, label list and training record.

    Build one with `classifier_training.train_classifier()` or `load()`; the constructor only wraps
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

    @property
    def architecture(self) -> str:
        """`sequence-classification` (transformers head) or the sentence-embedding + linear head."""
        if isinstance(self.model, EmbeddingClassifier):
            return EMBEDDING_ARCHITECTURE
        return SEQUENCE_ARCHITECTURE

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
        texts = check_texts(texts)
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
        try:
            path.mkdir(parents=True, exist_ok=True)
            with without_progress_bars():  # no "Writing model shards" bar for one small file
                self.model.save_pretrained(path)
                self.tokenizer.save_pretrained(path)
            if not (path / WEIGHTS_FILE).is_file():
                raise ModelError(f"saving did not produce {path / WEIGHTS_FILE}; check disk space")
            meta = {
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "architecture": self.architecture,
                **training_record(self),
            }
            write_json_atomic(path / META_FILE, meta)
        except OSError as exc:
            raise ModelError(
                f"cannot save the classifier into {path}: {exc.strerror or exc} "
                f"({exc.filename or path}). Fix: choose a writable directory with free space"
            ) from exc
        logger.info("saved classifier %s to %s", self.version, path)

    @classmethod
    def load(
        cls, path: str | Path, *, quantize: bool | None = None, device: str | None = None
    ) -> TextClassifier:
        """Load a directory written by `save()`; ModelError names a missing or corrupt file.

        `quantize=True` applies int8 dynamic quantization to the linear layers (CPU only):
        faster inference for a small accuracy cost. `None` (default) follows the decision
        recorded at training time (`metrics.int8`) on the CPU, fp32 elsewhere.
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
        device, quantize = inference_device(meta, quantize, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise ModelError(
                f"cannot load the tokenizer files in {path}: {type(exc).__name__}: {exc}. "
                "Fix: copy the whole directory again, or retrain"
            ) from exc
        architecture = meta.get("architecture", SEQUENCE_ARCHITECTURE)
        if architecture not in (SEQUENCE_ARCHITECTURE, EMBEDDING_ARCHITECTURE):
            raise ModelError(
                f"{path / META_FILE} names architecture {architecture!r}; this threefold reads "
                f"{sorted((SEQUENCE_ARCHITECTURE, EMBEDDING_ARCHITECTURE))}. Fix: retrain"
            )
        try:
            if architecture == EMBEDDING_ARCHITECTURE:
                model = EmbeddingClassifier.from_pretrained(path)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(str(path))
        except ModelError:
            raise
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
        check_version(model, labels, meta, weights=path / WEIGHTS_FILE, meta_path=path / META_FILE)
        return cls(
            ready_for_inference(model, quantize, device),
            tokenizer,
            labels,
            **record_from_meta(meta, path / META_FILE),
            device=device,
            quantized=quantize,
        )


@contextlib.contextmanager
def without_progress_bars() -> Iterator[None]:
    """transformers' own progress bars (e.g. "Writing model shards") off for the block."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def int8_decision(
    fp32_accuracy: Mapping[str, float],
    int8_accuracy: Mapping[str, float],
    eval_size: Mapping[str, int],
) -> dict:
    """Whether int8 serves by default on the CPU: it may cost <= INT8_MAX_ACCURACY_DROP of eval
    accuracy on every task (one task, "label", for a single classifier), measured on at least
    INT8_MIN_EVAL_TEXTS eval texts of each (on fewer, one error is more than the allowance, so
    the cost cannot be told apart from noise: fp32). Saved as `metrics.int8`, with the reason.
    """
    drop = {task: round(fp32_accuracy[task] - int8_accuracy[task], 4) for task in fp32_accuracy}
    few = {task: n for task, n in eval_size.items() if n < INT8_MIN_EVAL_TEXTS}
    worst = max(drop, key=drop.__getitem__)
    if few:
        use = False
        reason = (
            f"fp32: too few eval texts to measure a {100 * INT8_MAX_ACCURACY_DROP:g}-point cost "
            f"({', '.join(f'{task} {n}' for task, n in few.items())}; needs "
            f"{INT8_MIN_EVAL_TEXTS}); load with quantize=True (--quantize) to serve int8 anyway"
        )
    else:
        use = drop[worst] <= INT8_MAX_ACCURACY_DROP
        reason = (
            f"{'int8' if use else 'fp32'}: int8 costs {100 * drop[worst]:.1f} point(s) of eval "
            f"accuracy at most ({worst}, {eval_size[worst]} eval texts); the allowance is "
            f"{100 * INT8_MAX_ACCURACY_DROP:g}"
        )
    logger.info("int8 eval accuracy %s (drop %s): default on CPU %s", int8_accuracy, drop, use)
    return {
        "accuracy": dict(int8_accuracy),
        "accuracy_drop": drop,
        "eval_size": dict(eval_size),
        "default_on_cpu": use,
        "reason": reason,
        "rule": f"int8 by default on the CPU when it costs <= {INT8_MAX_ACCURACY_DROP:g} of "
        f"eval accuracy on every task, measured on >= {INT8_MIN_EVAL_TEXTS} eval texts of each",
    }


def int8_copy(classifier: Any) -> Any:
    """An int8 copy of an fp32 classifier (TextClassifier or MultiTaskClassifier) on the CPU.

    The model is deep-copied and quantized; tokenizer, labels and version are shared.
    """
    twin = copy.copy(classifier)
    twin.model = quantize_dynamic_int8(copy.deepcopy(classifier.model))
    twin.device, twin.quantized = "cpu", True
    return twin


def _read_meta(path: Path) -> dict:
    meta = read_meta(
        path,
        META_FILE,
        format_version=FORMAT_VERSION,
        required=("labels",),
        kind="classifier",
        made_by=f"`threefold classifier train --out {path}` or TextClassifier.save()",
    )
    labels = meta["labels"]
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
    ):
        raise ModelError(
            f"{path / META_FILE} is corrupt: 'labels' must list two or more label names"
        )
    return meta
