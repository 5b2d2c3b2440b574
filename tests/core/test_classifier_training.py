"""Classifier training: class weights, clear errors for bad training data, early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.classifier_data import LABELS, POSITIVE, TEXTS, TINY, rows, write_csv

from threefold.core.classifier_training import (
    class_weights,
    train_classifier,
    train_classifier_from_files,
)
from threefold.core.errors import DataError
from threefold.core.training_config import TrainingConfig


def test_class_weights_favour_rare_labels() -> None:
    weights = class_weights(["a"] * 6 + ["b"] * 2, ["a", "b"])
    np.testing.assert_allclose(weights.numpy(), [8 / (2 * 6), 8 / (2 * 2)])


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
    )
    model = train_classifier(TEXTS, LABELS, config=config)
    metrics = model.metrics
    assert metrics["eval_source"].startswith("0.25 stratified split")
    assert metrics["eval"]["n"] == 6
    assert metrics["epochs_completed"] < 30
    assert metrics["best_step"] < metrics["steps"]
