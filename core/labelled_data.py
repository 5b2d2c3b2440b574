"""Labelled text examples (torch-free): read them from files, check them, split them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from threefold.core.errors import ConfigError, DataError
from threefold.core.tables import Record, read_records


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
        if (isinstance(label, float) and math.isnan(label)) or isinstance(label, dict | list):
            raise DataError(
                f"expected a label (a string or a number) in {label_column!r}, found {label!r}",
                path=str(path),
                line=record.line,
                column=label_column,
            )
        if label is None or not str(label).strip():
            raise DataError(
                f"expected a label in {label_column!r}, found {label!r}",
                path=str(path),
                line=record.line,
                column=label_column,
            )
        texts.append(str(record.values[text_column]))
        labels.append(_label_text(label))
    _check_one_spelling_per_number(records, labels, path, label_column)
    return texts, labels


def _label_text(label: object) -> str:
    """A label as text; a whole-number float is written as an integer (JSON 1.0 -> "1")."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label).strip()


def _check_one_spelling_per_number(
    records: Sequence[Record], labels: Sequence[str], path: str | Path, column: str
) -> None:
    """DataError when two different labels are the same number ("1" and "1.0", 1 and true)."""
    seen: dict[float, tuple[str, int]] = {}
    for record, label in zip(records, labels, strict=True):
        raw = record.values[column]
        try:
            number = float(raw) if isinstance(raw, bool | int | float | str) else math.nan
        except ValueError:
            continue
        if not math.isfinite(number):
            continue
        first, line = seen.setdefault(number, (label, record.line))
        if first != label:
            raise DataError(
                f"labels {first!r} (line {line}) and {label!r} are the same number written two "
                "ways, so they would be two classes. Fix: write each label one way",
                path=str(path),
                line=record.line,
                column=column,
            )


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


def check_texts(texts: Sequence[str], *, what: str = "input") -> list[str]:
    """The texts as a list; a single string, a non-string or a blank text is an error."""
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


def clean_examples(
    texts: Sequence[str], labels: Sequence[str], what: str
) -> tuple[list[str], list[str]]:
    """Checked texts and stripped labels of equal length; blank labels are a DataError."""
    texts = check_texts(texts, what=what)
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


def check_eval_labels(eval_labels: Sequence[str], label_names: Sequence[str]) -> None:
    """DataError when the eval data has labels the training data never had."""
    unseen = sorted(set(eval_labels) - set(label_names))
    if unseen:
        raise DataError(
            f"eval labels {unseen} never occur in the training data (its labels: "
            f"{sorted(label_names)}). Fix: add training examples with those labels, or remove "
            "them from the eval data"
        )
