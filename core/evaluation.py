"""Classification scores (accuracy, per-class precision/recall/F1, confusion) in plain numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from threefold.core.errors import ConfigError, DataError


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict:
    """Score predictions against gold labels.

    Returns `{n, accuracy, macro_f1, per_class: {label: {precision, recall, f1, support}},
    confusion: {labels, matrix}}` where `matrix[i][j]` counts examples whose true label is
    `labels[i]` and predicted label is `labels[j]`. Precision, recall or F1 with a zero
    denominator is 0.0. Macro-F1 averages F1 over `labels` (default: the sorted union of the
    labels seen in `y_true` and `y_pred`), so a class that is never predicted counts as 0.
    """
    y_true = [str(y) for y in y_true]
    y_pred = [str(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ConfigError(
            f"y_true and y_pred must have the same length; found {len(y_true)} and {len(y_pred)}"
        )
    if not y_true:
        raise DataError("nothing to score: y_true and y_pred are empty")
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    labels = [str(label) for label in labels]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be unique; found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted((set(y_true) | set(y_pred)) - set(index))
    if unknown:
        raise ConfigError(f"labels {unknown} occur in the data but not in labels={labels}")

    true_ids = np.fromiter((index[y] for y in y_true), dtype=np.int64, count=len(y_true))
    pred_ids = np.fromiter((index[y] for y in y_pred), dtype=np.int64, count=len(y_pred))
    k = len(labels)
    matrix = np.bincount(true_ids * k + pred_ids, minlength=k * k).reshape(k, k)

    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(hits, predicted)
    recall = _safe_divide(hits, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)

    return {
        "n": len(y_true),
        "accuracy": float(hits.sum() / len(y_true)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out
