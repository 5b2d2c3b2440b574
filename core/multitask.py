"""One BERT body, several classification heads (e.g. topic + sentiment): one forward pass each text.

A multi-task directory holds the body (a transformers model: `AutoModel.from_pretrained(dir)`
loads it), the tokenizer, `heads.safetensors` and `threefold_multitask.json` (tasks and their
labels, base model, max length, version, training record). Train with `train_multitask()`.

int8 dynamic quantization is measured at training time on the eval split and used by default on
the CPU when it costs at most `classifier.INT8_MAX_ACCURACY_DROP` of eval accuracy on every
task; the measurement and the decision are recorded in the directory (`metrics.int8`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from threefold.core.base_model import (
    clear_embedding_index_errors,
    load_pretrained,
    resolve_base_model,
)
from threefold.core.classifier import int8_copy, int8_decision
from threefold.core.device import torch_device
from threefold.core.embedding_classifier import encode_batch, masked_mean
from threefold.core.errors import ConfigError, DataError, ModelError
from threefold.core.evaluation import classification_report
from threefold.core.files import write_json_atomic
from threefold.core.labelled_data import check_texts, clean_examples, stratified_split
from threefold.core.model_directory import (
    check_version,
    inference_device,
    read_meta,
    ready_for_inference,
    record_from_meta,
    training_record,
    weights_fingerprint,
)
from threefold.core.small_data import (
    CONTRASTIVE,
    FINE_TUNE,
    UNLABELLED,
    StrategyChoice,
    choose_strategy,
    contrastive_fine_tune,
    embed_texts,
    fit_logistic_head,
    unused_schedule_note,
)
from threefold.core.training_config import FINE_TUNE_LEVERS, TrainingConfig
from threefold.core.training_recipe import class_weights
from threefold.core.training_rng import keeps_global_rngs

logger = logging.getLogger(__name__)

META_FILE = "threefold_multitask.json"
HEADS_FILE = "heads.safetensors"
FORMAT_VERSION = 1
POOLINGS = {False: "mean", True: "normalized mean"}


def is_multitask_dir(path: str | Path) -> bool:
    """True when `path` is a directory written by `MultiTaskClassifier.save()`."""
    return (Path(path) / META_FILE).is_file()


class MultiTaskModel(nn.Module):
    """A transformers body, mean pooling (L2-normalised when `normalize`: the contrastive
    path's heads read unit vectors), dropout and one linear head per task."""

    def __init__(
        self, body: PreTrainedModel, heads: Mapping[str, nn.Linear], *, normalize: bool = False
    ) -> None:
        super().__init__()
        self.body = body
        self.heads = nn.ModuleDict(dict(heads))
        self.normalize = normalize
        self.dropout = nn.Dropout(getattr(body.config, "hidden_dropout_prob", 0.1))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        """The L2-normalised mean of the token vectors (padding excluded)."""
        return nn.functional.normalize(self._mean(input_ids, attention_mask, **extra), dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> dict[str, torch.Tensor]:
        pooler = self.embed if self.normalize else self._mean
        pooled = self.dropout(pooler(input_ids, attention_mask, **extra))
        return {task: head(pooled) for task, head in self.heads.items()}

    def _mean(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        tokens = self.body(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
        return masked_mean(tokens, attention_mask)


class MultiTaskClassifier:
    """Several label sets over one text encoder; `predict_proba` scores every task in one pass."""

    def __init__(
        self,
        model: MultiTaskModel,
        tokenizer,
        tasks: Mapping[str, Sequence[str]],
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
        self.tasks = {task: list(labels) for task, labels in tasks.items()}
        self.base_model = base_model
        self.max_length = max_length
        self.metrics = metrics or {}
        self.config = config
        self.train_seconds = train_seconds
        self.created_at = created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.device = device
        self.quantized = quantized
        self.version = version or weights_fingerprint(model, _flat_labels(self.tasks))

    def __repr__(self) -> str:
        return f"MultiTaskClassifier(tasks={self.tasks}, version={self.version!r})"

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> dict[str, np.ndarray]:
        """{task: float32 (len(texts), len(labels))}; one forward pass per batch for all tasks."""
        texts = check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; found {batch_size!r}")
        out = {
            task: np.empty((len(texts), len(labels)), dtype=np.float32)
            for task, labels in self.tasks.items()
        }
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                encoded = encode_batch(
                    self.tokenizer, [texts[i] for i in batch], self.max_length, self.device
                )
                for task, logits in self.model(**encoded).items():
                    out[task][batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str], *, batch_size: int = 64) -> dict[str, list[str]]:
        """{task: the most likely label of each text}."""
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        return {
            task: [self.tasks[task][i] for i in rows.argmax(axis=1)]
            for task, rows in probabilities.items()
        }

    def save(self, path: str | Path) -> None:
        """Body (transformers), tokenizer, heads and `threefold_multitask.json` into `path`."""
        if self.quantized:
            raise ModelError(
                "a quantized multi-task model cannot be saved; save the fp32 model and load it "
                "with quantize=True"
            )
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"cannot save into {path}: it is a file, expected a directory")
        path.mkdir(parents=True, exist_ok=True)
        self.model.body.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        heads = {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in self.model.heads.state_dict().items()
        }
        save_file(heads, str(path / HEADS_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "architecture": "multitask: mean-pooled body + one linear head per task",
            "pooling": POOLINGS[self.model.normalize],
            "tasks": self.tasks,
            **training_record(self),
        }
        write_json_atomic(path / META_FILE, meta)
        logger.info("saved multi-task model %s to %s", self.version, path)

    @classmethod
    def load(
        cls, path: str | Path, *, quantize: bool | None = None, device: str | None = None
    ) -> MultiTaskClassifier:
        """Load a directory written by `save()`; ModelError names a missing or corrupt file.

        `quantize=None` follows the recorded int8 decision on the CPU (fp32 elsewhere).
        """
        path = Path(path)
        meta = _read_meta(path)
        for name in ("config.json", "model.safetensors", HEADS_FILE):
            if not (path / name).is_file():
                raise ModelError(
                    f"{path / name} is missing, so {path} is an incomplete multi-task model "
                    "directory. Fix: copy the whole directory again, or retrain"
                )
        device, quantize = inference_device(meta, quantize, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            body = AutoModel.from_pretrained(str(path))
            state = load_file(str(path / HEADS_FILE))
        except Exception as exc:
            raise ModelError(
                f"cannot load the multi-task model in {path}: {type(exc).__name__}: {exc}. "
                "Fix: copy the whole directory again, or retrain"
            ) from exc
        tasks = meta["tasks"]
        heads = {}
        for task, labels in tasks.items():
            weight = state.get(f"{task}.weight")
            if weight is None or weight.shape[0] != len(labels):
                raise ModelError(
                    f"{path / HEADS_FILE} has no head for task {task!r} with {len(labels)} "
                    "labels; the directory mixes two models. Fix: retrain or restore it"
                )
            heads[task] = nn.Linear(weight.shape[1], weight.shape[0])
        pooling = meta.get("pooling", POOLINGS[False])  # written since the contrastive path
        if pooling not in POOLINGS.values():
            raise ModelError(
                f"{path / META_FILE} has pooling {pooling!r}; this threefold reads "
                f"{sorted(POOLINGS.values())}. Fix: retrain with this version"
            )
        model = MultiTaskModel(body, heads, normalize=pooling == POOLINGS[True])
        model.heads.load_state_dict(state)
        check_version(model, _flat_labels(tasks), meta, weights=path, meta_path=path / META_FILE)
        return cls(
            ready_for_inference(model, quantize, device),
            tokenizer,
            tasks,
            **record_from_meta(meta, path / META_FILE),
            device=device,
            quantized=quantize,
        )


@keeps_global_rngs
@clear_embedding_index_errors
def train_multitask(
    texts: Sequence[str],
    targets: Mapping[str, Sequence[str | None]],
    *,
    base_model: str | None = None,
    config: TrainingConfig | None = None,
) -> MultiTaskClassifier:
    """Train one body with a head per task on `texts`.

    A task's label may be None for a text not labelled for that task (topic and sentiment from
    two files: `merge_task_data`); such a text adds no loss to that head and is not in its eval.
    The path is chosen like a single classifier's (`small_data.choose_strategy`, per task): the
    summed (class-weighted per task when `config.class_weighting`) cross-entropy of the heads
    is minimised; or, when any task's data is small, the body is tuned contrastively on each
    task's same/different-label pairs and each head is a logistic regression on the normalised
    embeddings (`metrics.strategy` and `strategy_reason` say which and why). A stratified
    `config.eval_fraction` (by each text's first label) is held out and each task is evaluated
    on its labelled part; there is no early stopping.
    """
    config = config or TrainingConfig()
    if len(targets) < 1:
        raise ConfigError("expected at least one task, e.g. {'topic': [...], 'sentiment': [...]}")
    texts = check_texts(texts, what="multi-task training")
    cleaned = {task: _task_labels(task, labels, len(texts)) for task, labels in targets.items()}
    unlabelled = [i for i in range(len(texts)) if all(cleaned[t][i] is None for t in cleaned)]
    if unlabelled:
        raise DataError(
            f"multi-task training text #{unlabelled[0]} has no label for any task "
            f"({len(unlabelled)} such texts); every text needs a label for at least one task"
        )
    tasks = {task: sorted({y for y in labels if y is not None}) for task, labels in cleaned.items()}
    warnings = []
    unused = config.changed(FINE_TUNE_LEVERS)
    if unused:
        warnings.append(
            f"{unused} apply to single-task fine-tuning only; the multi-task trainer did not "
            "use them. Fix: train the tasks as separate classifiers to use them"
        )
        logger.warning("%s", warnings[-1])
    strata = [
        next(f"{task}={cleaned[task][i]}" for task in tasks if cleaned[task][i] is not None)
        for i in range(len(texts))
    ]
    train_idx, eval_idx = stratified_split(strata, config.eval_fraction, config.seed)
    device = torch_device(None)
    base = resolve_base_model(base_model)
    transformers.set_seed(config.seed)
    tokenizer, body = load_pretrained(base, AutoModel, config.max_length)
    train_labels = {task: _labelled(cleaned[task], train_idx) for task in tasks}
    choice = _choose_path(train_labels, config)
    logger.info("multi-task training path: %s (%s)", choice.strategy, choice.reason)
    schedule_note = unused_schedule_note(config)
    if schedule_note and choice.strategy == CONTRASTIVE:
        warnings.append(schedule_note)
        logger.warning("%s", warnings[-1])
    hidden = body.config.hidden_size
    model = MultiTaskModel(
        body,
        {task: nn.Linear(hidden, len(labels)) for task, labels in tasks.items()},
        normalize=choice.strategy == CONTRASTIVE,
    ).to(device)
    ids = {
        task: torch.tensor(
            [UNLABELLED if y is None else tasks[task].index(y) for y in cleaned[task]]
        )
        for task in tasks
    }
    weights = {
        task: class_weights(train_labels[task], tasks[task]).to(device)
        if config.class_weighting
        else None
        for task in tasks
    }
    n_train = {task: len(labels) for task, labels in train_labels.items()}
    logger.info(
        "multi-task %s of %s on %d texts (labelled per task %s), tasks %s, eval %d texts",
        choice.strategy,
        base,
        len(train_idx),
        n_train,
        {task: len(labels) for task, labels in tasks.items()},
        len(eval_idx),
    )
    started = time.perf_counter()
    train = _train_contrastive if choice.strategy == CONTRASTIVE else _fine_tune
    record = train(model, tokenizer, texts, train_idx, ids, weights, config, device)
    logger.info("training stopped: %s", record["stop_reason"])
    classifier = MultiTaskClassifier(
        model,
        tokenizer,
        tasks,
        base_model=base,
        max_length=config.max_length,
        config=config,
        train_seconds=round(time.perf_counter() - started, 2),
        device=device,
    )
    eval_texts = [texts[i] for i in eval_idx]
    reports = _reports(classifier.predict(eval_texts) if eval_idx else {}, cleaned, eval_idx, tasks)
    int8 = None
    if reports:
        quantized = _reports(int8_copy(classifier).predict(eval_texts), cleaned, eval_idx, tasks)
        int8 = int8_decision(
            {task: r["accuracy"] for task, r in reports.items()},
            {task: r["accuracy"] for task, r in quantized.items()},
            {task: r["n"] for task, r in reports.items()},
        )
    classifier.metrics = {
        "int8": int8,
        "eval": reports or None,
        "eval_source": f"{config.eval_fraction:g} stratified split (by each text's first label)"
        if eval_idx
        else None,
        "n_train": len(train_idx),
        "n_train_per_task": n_train,
        "strategy": choice.strategy,
        "strategy_reason": choice.reason,
        **record,
        "warnings": warnings,
    }
    return classifier


def _choose_path(
    train_labels: Mapping[str, Sequence[str]], config: TrainingConfig
) -> StrategyChoice:
    """Fine-tune the heads, or the contrastive (small-data) path when any task needs it."""
    choices = {task: choose_strategy(labels, config) for task, labels in train_labels.items()}
    small = [task for task, choice in choices.items() if choice.strategy == CONTRASTIVE]
    reasons = "; ".join(f"{task}: {choice.reason}" for task, choice in choices.items())
    if small:
        return StrategyChoice(
            CONTRASTIVE,
            f"the {' and '.join(small)} data takes the contrastive path, so the shared body is "
            f"tuned on every task's same/different-label pairs, then each head is a logistic "
            f"regression ({reasons})",
        )
    return StrategyChoice(FINE_TUNE, f"every task fine-tunes ({reasons})")


def _fine_tune(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    train_idx: Sequence[int],
    ids: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor | None],
    config: TrainingConfig,
    device: str,
) -> dict:
    """The summed (class-weighted) cross-entropy of the heads, `config.epochs` over the data."""
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    steps = config.max_steps if config.max_steps > 0 else math.ceil(config.epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps), steps
    )
    rng = np.random.default_rng(config.seed)
    model.train()
    order: list[int] = []
    loss = torch.tensor(0.0)
    for step in range(steps):
        if len(order) < config.batch_size:
            order.extend(int(i) for i in rng.permutation(train_idx))
        batch, order = order[: config.batch_size], order[config.batch_size :]
        encoded = encode_batch(tokenizer, [texts[i] for i in batch], config.max_length, device)
        logits = model(**encoded)
        losses = [
            nn.functional.cross_entropy(
                logits[task], wanted.to(device), weight=weights[task], ignore_index=UNLABELLED
            )
            for task in ids
            if bool(((wanted := ids[task][batch]) != UNLABELLED).any())
        ]
        loss = torch.stack(losses).sum()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            logger.info("multi-task step %d/%d: loss %.4f", step + 1, steps, loss.item())
    model.eval()
    stop_reason = (
        f"reached max_steps {config.max_steps}"
        if config.max_steps > 0
        else f"completed all {config.epochs:g} epochs ({steps} steps)"
    )
    return {"steps": steps, "stop_reason": stop_reason, "train_loss": round(loss.item(), 6)}


def _train_contrastive(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    train_idx: Sequence[int],
    ids: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor | None],
    config: TrainingConfig,
    device: str,
) -> dict:
    """The body tuned on every task's label pairs (`small_data`), then a logistic head per task
    fitted on the embeddings of the texts labelled for it."""
    train_texts = [texts[i] for i in train_idx]
    label_sets = [task_ids[train_idx] for task_ids in ids.values()]
    record = contrastive_fine_tune(model, tokenizer, train_texts, label_sets, config, device)
    embeddings = embed_texts(model, tokenizer, train_texts, config.max_length, device)
    for task, labels in zip(ids, label_sets, strict=True):
        rows = labels != UNLABELLED
        head = fit_logistic_head(
            embeddings[rows],
            labels[rows],
            model.heads[task].out_features,
            None if weights[task] is None else weights[task].cpu(),
        )
        model.heads[task] = head.to(device)
    model.eval()
    return record


def merge_task_data(
    sets: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> tuple[list[str], dict[str, list[str | None]]]:
    """(texts, targets) for `train_multitask` from one (texts, labels) set per task.

    A text found in the sets of several tasks becomes one example labelled for each of them;
    every other example is labelled for its own task only (None for the rest).
    """
    texts: list[str] = []
    targets: dict[str, list[str | None]] = {task: [] for task in sets}
    for task, (task_texts, labels) in sets.items():
        task_texts, labels = clean_examples(task_texts, labels, f"{task} training")
        open_rows: dict[str, list[int]] = {}  # text -> earlier rows still unlabelled for task
        for row, text in enumerate(texts):
            if targets[task][row] is None:
                open_rows.setdefault(text, []).append(row)
        for text, label in zip(task_texts, labels, strict=True):
            waiting = open_rows.get(text)
            if waiting:
                targets[task][waiting.pop(0)] = label
                continue
            texts.append(text)
            for name in targets:
                targets[name].append(label if name == task else None)
    return texts, targets


def _task_labels(task: str, labels: Sequence[str | None], n_texts: int) -> list[str | None]:
    """Stripped labels (None: not labelled for `task`); two or more distinct labels needed."""
    if isinstance(labels, str):
        raise ConfigError(f"{task} labels must be a list of labels, not a single string")
    if len(labels) != n_texts:
        raise ConfigError(
            f"multi-task training has {n_texts} texts but {len(labels)} {task} labels"
        )
    cleaned = [None if y is None else str(y).strip() for y in labels]
    blank = [i for i, y in enumerate(cleaned) if y == ""]
    if blank:
        raise DataError(
            f"{task} training example #{blank[0]} has an empty label; use None for a text "
            f"not labelled for {task!r}"
        )
    names = {y for y in cleaned if y is not None}
    if len(names) < 2:
        raise DataError(
            f"task {task!r} has {'a single label ' + repr(names.pop()) if names else 'no labels'}"
            "; each task needs at least two labels. Fix: check the label column"
        )
    return cleaned


def _labelled(labels: Sequence[str | None], rows: Sequence[int]) -> list[str]:
    return [label for i in rows if (label := labels[i]) is not None]


def _reports(
    predicted: Mapping[str, Sequence[str]],
    cleaned: Mapping[str, Sequence[str | None]],
    rows: Sequence[int],
    tasks: Mapping[str, Sequence[str]],
) -> dict[str, dict]:
    """Per task, the classification report over the `rows` labelled for it (`predicted[task]`
    is in `rows` order); a task without labelled rows gets none."""
    reports = {}
    for task, labels in tasks.items():
        pairs = [(cleaned[task][i], predicted[task][k]) for k, i in enumerate(rows)]
        pairs = [(truth, guess) for truth, guess in pairs if truth is not None]
        if not pairs:
            continue
        truth, guesses = zip(*pairs, strict=True)
        reports[task] = classification_report(list(truth), list(guesses), labels=labels)
        logger.info(
            "eval %s (%d examples): accuracy %.4f, macro-F1 %.4f",
            task,
            len(pairs),
            reports[task]["accuracy"],
            reports[task]["macro_f1"],
        )
    return reports


def _flat_labels(tasks: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"{task}:{label}" for task, labels in tasks.items() for label in labels]


def _read_meta(path: Path) -> dict:
    meta = read_meta(
        path,
        META_FILE,
        format_version=FORMAT_VERSION,
        required=("tasks",),
        kind="multi-task model",
        made_by=f"`threefold alerts train --multitask --out {path}` or MultiTaskClassifier.save()",
    )
    tasks = meta["tasks"]
    if not isinstance(tasks, dict) or not all(
        isinstance(task, str)
        and isinstance(labels, list)
        and len(labels) >= 2
        and all(isinstance(label, str) for label in labels)
        for task, labels in tasks.items()
    ):
        raise ModelError(
            f"{path / META_FILE} is corrupt: 'tasks' must map each task to two or more labels; "
            f"found {tasks!r:.200}. Fix: copy the whole directory again, or retrain"
        )
    return meta
