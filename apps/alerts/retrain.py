"""`threefold retrain alerts`: base training CSV + analysts' corrections -> candidate -> gate.

One run retrains one registry entry: the sentiment or the topic classifier, or the multi-task
model (both heads). Training data = the base CSV with each corrected headline's label replaced
by the analyst's (a correction wins over the base label; corrected headlines not in the base are
added), minus every headline of the gate CSV. The gate set is never trained on: its texts are
removed from the training data and the count is reported. Candidate and current version are
scored on the gate set by macro-F1 (the mean over both tasks for a multi-task model); the
candidate goes live only when `core.gate.judge` says it is not worse (within the margin), and is
kept as a rejected version otherwise. Training is `core.classifier_training` (small data:
the contrastive path) or `core.multitask`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.apps.alerts.model_source import load_classifier, load_joint
from threefold.apps.alerts.signals import TASKS, corrected_labels
from threefold.core.errors import DataError
from threefold.core.evaluation import classification_report
from threefold.core.gate import judge, publish_gated, retrain_report
from threefold.core.multitask import is_multitask_dir
from threefold.core.registry import ModelEntry, data_fingerprint
from threefold.core.tables import read_records
from threefold.core.training_config import TrainingConfig

logger = logging.getLogger(__name__)
METRIC = "macro_f1"


def normalize(text: str) -> str:
    """How headlines are matched between the base, the corrections and the gate set."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class LabelledRows:
    """Texts with a label per task (`labels[task][i]` belongs to `texts[i]`)."""

    texts: list[str]
    labels: dict[str, list[str]]

    @classmethod
    def read(
        cls, path: str | Path, tasks: Sequence[str], text_column: str = "text"
    ) -> LabelledRows:
        columns = (text_column, *tasks)
        records = read_records(
            path, required=columns, non_empty=columns, hint="expected columns text,topic,sentiment"
        )
        return cls(
            [str(r.values[text_column]).strip() for r in records],
            {t: [str(r.values[t]).strip() for r in records] for t in tasks},
        )


@dataclass
class TrainingSet:
    """The candidate's training data and how it was made."""

    texts: list[str] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)
    corrected: int = 0  # base rows whose label a correction replaced
    added: int = 0  # corrected headlines that were not in the base data
    gate_removed: int = 0  # distinct headlines dropped because the gate set has them

    def report(self) -> dict[str, int]:
        return {
            "examples": len(self.texts),
            "corrected": self.corrected,
            "added": self.added,
            "gate_removed": self.gate_removed,
        }


def build_training_set(
    base: LabelledRows, corrections: Sequence[Mapping[str, Any]], gate_texts: Sequence[str]
) -> TrainingSet:
    """Base rows with corrections applied (a correction wins), gate headlines removed.

    A corrected headline that is not in the base data is added only when every task has a
    label for it (for one task, its correction; for a multi-task model, both).
    """
    tasks = list(base.labels)
    fixes = {
        t: {normalize(k): v for k, v in corrected_labels(corrections, t).items()} for t in tasks
    }
    gate = {normalize(t) for t in gate_texts}
    out = TrainingSet(labels={t: [] for t in tasks})
    seen: set[str] = set()
    removed: set[str] = set()
    for index, text in enumerate(base.texts):
        key = normalize(text)
        if key in gate:
            removed.add(key)
            continue
        if key in seen:
            continue
        seen.add(key)
        changed = False
        for task in tasks:
            label = fixes[task].get(key, base.labels[task][index])
            changed |= label != base.labels[task][index]
            out.labels[task].append(label)
        out.texts.append(text)
        out.corrected += changed
    originals = {normalize(str(c["text"])): str(c["text"]) for c in corrections}
    for key, text in originals.items():
        if key in seen or not all(key in fixes[t] for t in tasks):
            continue
        if key in gate:
            removed.add(key)
            continue
        seen.add(key)
        out.texts.append(text)
        for task in tasks:
            out.labels[task].append(fixes[task][key])
        out.added += 1
    out.gate_removed = len(removed)
    return out


def gate_scores(predicted: Mapping[str, Sequence[str]], gate: LabelledRows) -> dict[str, float]:
    """Macro-F1 per task on the gate set, and `macro_f1`: their mean."""
    scores = {}
    for task, labels in predicted.items():
        gold = gate.labels[task]
        names = sorted(set(gold) | set(labels))
        scores[f"{task}_{METRIC}"] = round(
            classification_report(gold, list(labels), labels=names)["macro_f1"], 4
        )
    scores[METRIC] = round(sum(scores.values()) / len(scores), 4)
    return scores


def predict(model: Any, texts: Sequence[str], task: str | None) -> dict[str, list[str]]:
    """Labels per task: a multi-task model (task None) or one classifier for `task`."""
    if task is None:
        return {t: list(v) for t, v in model.predict(list(texts)).items()}
    return {task: list(model.predict(list(texts)))}


def retrain(
    entry: ModelEntry,
    *,
    task: str,
    training_data: str | Path,
    gate_data: str | Path,
    corrections: Sequence[Mapping[str, Any]],
    config: TrainingConfig,
    margin: float = 0.0,
    base_model: str | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Train a candidate for `entry`, gate it against the current version, publish it.

    `task` is "sentiment" or "topic" for a classifier entry; an entry whose current version is
    a multi-task model is retrained on both tasks. Returns the `threefold retrain` JSON.
    """
    joint = entry.current_version() is not None and is_multitask_dir(entry.current_dir())
    tasks = list(TASKS) if joint else [task]
    base = LabelledRows.read(training_data, tasks)
    gate = LabelledRows.read(gate_data, tasks)
    relevant = [c for c in corrections if c.get("task") in tasks]
    data = build_training_set(base, relevant, gate.texts)
    logger.info(
        "retraining %s on %s: %s (gate set %s: %d headlines)",
        entry.name,
        tasks,
        data.report(),
        gate_data,
        len(gate.texts),
    )
    for name in tasks:
        unseen = sorted(set(gate.labels[name]) - set(data.labels[name]))
        if unseen:
            raise DataError(
                f"the gate set has {name} labels {unseen} that no training example has; "
                "add examples of them to the training CSV or drop them from the gate CSV",
                path=str(gate_data),
            )
    candidate = _train(data, tasks, joint, config, base_model)
    candidate_scores = gate_scores(predict(candidate, gate.texts, None if joint else task), gate)
    current_version = entry.current_version()
    current_scores = None
    if current_version is not None:
        load = load_joint if joint else load_classifier
        current = load(entry.current_dir())
        current_scores = gate_scores(predict(current, gate.texts, None if joint else task), gate)
    decision = judge(
        METRIC,
        candidate_scores[METRIC],
        current_scores[METRIC] if current_scores else None,
        margin=margin,
    )
    fingerprint = data_fingerprint(data.texts, *(data.labels[t] for t in tasks), Path(gate_data))
    metadata = {
        "app": "alerts",
        "task": "topic+sentiment" if joint else task,
        "data_fingerprint": fingerprint,
        "metrics": {**candidate_scores, "gate_examples": len(gate.texts)},
        "current_metrics": current_scores,
        "training": {**data.report(), "base_data": str(training_data)},
        "gate_data": str(gate_data),
        "corrections": len(relevant),
        "base_model": getattr(candidate, "base_model", base_model),
        "model_fingerprint": candidate.version,
    }
    if created_by:
        metadata["created_by"] = created_by
    version = publish_gated(
        entry, lambda folder, _v: candidate.save(folder), decision, metadata=metadata
    )
    return retrain_report(
        "alerts",
        entry,
        version,
        current_version,
        decision,
        task=metadata["task"],
        candidate_metrics=candidate_scores,
        current_metrics=current_scores,
        training=data.report(),
        gate_set={"path": str(gate_data), "examples": len(gate.texts)},
    )


def _train(
    data: TrainingSet,
    tasks: Sequence[str],
    joint: bool,
    config: TrainingConfig,
    base_model: str | None,
) -> Any:
    if joint:
        from threefold.core.multitask import train_multitask

        return train_multitask(data.texts, data.labels, base_model=base_model, config=config)
    from threefold.core.classifier_training import train_classifier

    return train_classifier(data.texts, data.labels[tasks[0]], base_model=base_model, config=config)
