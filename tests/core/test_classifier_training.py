"""Classifier training: class weights, clear errors for bad training data, early stopping."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.classifier_data import LABELS, POSITIVE, TEXTS, TINY, rows, write_csv

from threefold.core.classifier_training import (
    check_prediction_collapse,
    describe_stop,
    train_classifier,
    train_classifier_from_files,
)
from threefold.core.errors import DataError
from threefold.core.training_config import TrainingConfig
from threefold.core.training_recipe import class_weights


def test_class_weights_favour_rare_labels() -> None:
    weights = class_weights(["a"] * 6 + ["b"] * 2, ["a", "b"])
    np.testing.assert_allclose(weights.numpy(), [8 / (2 * 6), 8 / (2 * 2)])
    # a label with no training example (partial multi-task labels) weighs as if seen once
    np.testing.assert_allclose(class_weights(["a"] * 4, ["a", "b"]).numpy(), [0.5, 2.0])


# ------------------------------------------------------------------ bad training input
def test_empty_training_file_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: the file has no records"):
        train_classifier_from_files(empty, config=TINY)


def test_missing_column_lists_found_columns_and_the_flag(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"body": "x", "label": "a"}])
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['text'\]; found \['body', 'label'\].*--text-column"
    ):
        train_classifier_from_files(path, config=TINY)


def test_configured_columns_are_used(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"body": "x", "tag": "a"}] * 3)
    config = TrainingConfig(text_column="body", label_column="tag")
    with pytest.raises(DataError, match=r"single label 'a' in all 3 rows"):
        train_classifier_from_files(path, config=config)


def test_eval_labels_unknown_to_training_are_named(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows(TEXTS, LABELS))
    evaluation = write_csv(
        tmp_path / "eval.csv", rows(["a", "b", "c"], ["positive", "bogus", "mixed"])
    )
    with pytest.raises(DataError, match=r"eval labels \['bogus', 'mixed'\] never occur"):
        train_classifier_from_files(train, evaluation, config=TINY)


def test_empty_text_row_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        [
            {"text": "fine", "label": "a"},
            {"text": "  ", "label": "b"},
            {"text": "ok", "label": "b"},
        ],
    )
    with pytest.raises(DataError, match=r"t\.csv, line 3, column text: expected non-empty text"):
        train_classifier_from_files(path, config=TINY)


def test_single_class_training_data_is_rejected() -> None:
    with pytest.raises(DataError, match=r"single label 'positive'.*at least two labels"):
        train_classifier(POSITIVE, ["positive"] * len(POSITIVE), config=TINY)


def test_empty_text_in_memory_training_data_is_rejected() -> None:
    with pytest.raises(DataError, match=r"training text #1 is empty"):
        train_classifier(["good", "", "bad"], ["a", "b", "b"], config=TINY)


@pytest.mark.slow
def test_training_stops_early_when_eval_macro_f1_stops_improving() -> None:
    config = TrainingConfig(
        epochs=30,
        batch_size=8,
        learning_rate=2e-4,
        warmup_ratio=0.0,
        early_stopping_patience=1,
        eval_fraction=0.25,
        output_progress=False,
        strategy="fine-tune",
    )
    model = train_classifier(TEXTS, LABELS, config=config)
    metrics = model.metrics
    assert metrics["eval_source"].startswith("0.25 stratified split")
    assert metrics["eval"]["n"] == 6
    assert metrics["epochs_completed"] < 30
    assert metrics["best_step"] < metrics["steps"]
    assert metrics["stop_reason"].startswith("early stopping after epoch")
    assert "did not improve for 1 evaluation(s)" in metrics["stop_reason"]
    assert any("too few to early-stop on" in note for note in metrics["warnings"])


# ------------------------------------------------------------------ stop reasons and warnings
def _state(step: int, max_steps: int, epoch: float, best: float | None = 0.5) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step, max_steps=max_steps, epoch=epoch, best_metric=best, best_global_step=2
    )


def test_stop_reason_names_early_stopping_and_the_best_checkpoint() -> None:
    config = TrainingConfig(epochs=20, early_stopping_patience=2)
    reason = describe_stop(_state(6, 40, 3.0), config)
    assert reason.startswith("early stopping after epoch 3 of 20 (step 6 of 40)")
    assert "did not improve for 2 evaluation(s)" in reason
    assert "best checkpoint (step 2, macro-F1 0.5000)" in reason


def test_stop_reason_names_completed_epochs_or_max_steps() -> None:
    assert describe_stop(_state(40, 40, 20.0), TrainingConfig(epochs=20)) == (
        "completed all 20 epochs (40 steps)"
    )
    assert describe_stop(_state(16, 16, 8.0), TrainingConfig(max_steps=16)).startswith(
        "reached max_steps 16"
    )


class _OneClass:
    """Pure-logic double: a classifier that always answers the same label."""

    def __init__(self) -> None:
        self.labels = ["negative", "neutral", "positive"]

    def predict(self, texts):
        return ["neutral"] * len(texts)


def test_prediction_collapse_is_a_warning_naming_the_missing_labels() -> None:
    accuracy, warning = check_prediction_collapse(_OneClass(), TEXTS, LABELS)
    assert accuracy == round(LABELS.count("neutral") / len(LABELS), 4)
    assert warning.startswith("prediction collapse: on its own 20 training examples")
    assert "never ['negative', 'positive']" in warning
    assert "--strategy contrastive" in warning


class _MissesOne:
    """Pure-logic double: right on every label but the last, which it never predicts."""

    def __init__(self) -> None:
        self.labels = [f"intent_{i}" for i in range(10)]

    def predict(self, texts):
        return [t if t != "intent_9" else "intent_0" for t in texts]


def test_a_few_labels_never_predicted_is_underfitting_not_collapse() -> None:
    texts = [f"intent_{i % 10}" for i in range(50)]
    accuracy, warning = check_prediction_collapse(_MissesOne(), texts, texts)
    assert accuracy == 0.9
    assert warning.startswith("labels never predicted: on its own 50 training examples the model")
    assert "predicts 9 of its 10 labels and never ['intent_9']" in warning
    assert "underfits them" in warning and "collapse" not in warning
