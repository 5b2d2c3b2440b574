"""Analysts' signals with provenance: corrected labels of scored headlines, verdicts on alerts.

A correction records what the analyst said (task, label) and what they saw (the headline, the
model's prediction and the model version that made it, from the consumer's record of the
scored message). The latest correction of a headline for a task wins, in the store and in
training data (`corrected_labels`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from threefold.apps.alerts.windows import SENTIMENTS
from threefold.core.errors import DataError

TASKS = ("sentiment", "topic")
VERDICTS = ("false_alarm", "true_alarm")
MAX_NOTE_CHARS = 500
SCORED_FIELDS = ("id", "text", "topic", "sentiment", "models", "event_time", "source")


class InvalidSignal(DataError):
    """A correction or verdict that cannot be stored; `field` names the bad input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def scored_summary(record: Mapping[str, object]) -> dict[str, object]:
    """What the dashboard keeps of a scored message (enough to correct it with provenance)."""
    return {name: record.get(name) for name in SCORED_FIELDS}


def allowed_labels(task: str, topic_labels: Sequence[str]) -> list[str]:
    """The labels an analyst may choose for `task` (InvalidSignal for an unknown task)."""
    if task not in TASKS:
        raise InvalidSignal(f"task must be one of {sorted(TASKS)}, found {task!r}", "task")
    return sorted(SENTIMENTS) if task == "sentiment" else sorted(topic_labels)


def make_correction(
    scored: Mapping[str, object],
    task: str,
    label: str,
    *,
    analyst: str,
    topic_labels: Sequence[str],
    now: float,
) -> dict[str, object]:
    """The stored correction of `scored` (a `scored_summary`): the new label and what was seen."""
    labels = allowed_labels(task, topic_labels)
    if label not in labels:
        raise InvalidSignal(
            f"{task} label must be one of {labels}, found {label!r}",
            "label",
        )
    models = scored.get("models") or {}
    return {
        "message_id": scored["id"],
        "text": scored["text"],
        "task": task,
        "label": label,
        "predicted": scored.get(task),
        "model_version": models.get(task) if isinstance(models, dict) else None,
        "analyst": analyst,
        "at": _iso(now),
    }


def make_verdict(
    alert: Mapping[str, object], verdict: str, *, analyst: str, note: str, now: float
) -> dict[str, object]:
    """The stored verdict on `alert`: false or true alarm, who said so, and the alert's window."""
    if verdict not in VERDICTS:
        raise InvalidSignal(
            f"verdict must be one of {list(VERDICTS)}, found {verdict!r}", "verdict"
        )
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidSignal(
            f"note is {len(note)} characters; the limit is {MAX_NOTE_CHARS}. Shorten it", "note"
        )
    return {
        "alert_id": alert["alert_id"],
        "verdict": verdict,
        "note": note,
        "key": alert.get("key"),
        "window_start": alert.get("window_start"),
        "window_end": alert.get("window_end"),
        "summary": alert.get("summary"),
        "analyst": analyst,
        "at": _iso(now),
    }


def correction_key(task: str, text: str) -> str:
    """Where a headline's correction for `task` is stored: one per (task, text), latest wins."""
    return f"{task}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def corrected_labels(corrections: Iterable[Mapping[str, object]], task: str) -> dict[str, str]:
    """text -> label for `task`; of several corrections of one text, the latest (`at`) wins."""
    latest: dict[str, Mapping[str, object]] = {}
    for record in corrections:
        if record["task"] != task:
            continue
        text = str(record["text"])
        if text not in latest or str(record["at"]) >= str(latest[text]["at"]):
            latest[text] = record
    return {text: str(record["label"]) for text, record in latest.items()}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
