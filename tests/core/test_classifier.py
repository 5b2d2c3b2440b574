"""TextClassifier: tiny real fine-tuning, save/load round trip, int8, and every bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from threefold.core.classifier import (
    META_FILE,
    WEIGHTS_FILE,
    TextClassifier,
    class_weights,
    stratified_split,
)
from threefold.core.errors import ConfigError, DataError, ModelError
from threefold.core.training_config import TrainingConfig

POSITIVE = [
    "profit rose sharply this quarter",
    "sales grew strongly in every region",
    "the company beat expectations again",
    "record revenue and higher margins",
    "shares jumped after strong results",
    "the dividend was raised by ten percent",
    "orders increased by a third",
]
NEGATIVE = [
    "profit fell sharply this quarter",
    "sales dropped badly in every region",
    "the company missed expectations again",
    "losses widened and margins shrank",
    "shares slumped after weak results",
    "the dividend was cut by ten percent",
    "orders decreased by a third",
]
NEUTRAL = [
    "the annual meeting is held in march",
    "the company is based in helsinki",
    "the board has seven members",
    "the report will be published on tuesday",
    "the firm makes paper and packaging",
    "the office moved to a new address",
]
TEXTS = POSITIVE + NEGATIVE + NEUTRAL
LABELS = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE) + ["neutral"] * len(NEUTRAL)
TINY = TrainingConfig(
    max_steps=16, batch_size=8, learning_rate=2e-4, warmup_ratio=0.0, output_progress=False
)


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows(texts: list[str], labels: list[str]) -> list[dict[str, str]]:
    return [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier trained from files (train + separate eval file), saved once."""
    folder = tmp_path_factory.mktemp("classifier")
    train = write_csv(folder / "train.csv", rows(TEXTS, LABELS))
    evaluation = write_csv(
        folder / "eval.csv",
        rows(
            ["profit grew strongly", "sales fell badly", "the meeting is in march"],
            ["positive", "negative", "neutral"],
        ),
    )
    model = TextClassifier.train_from_files(train, evaluation, config=TINY)
    model.save(folder / "model")
    return folder / "model"


@pytest.fixture(scope="session")
def classifier(classifier_dir: Path) -> TextClassifier:
    return TextClassifier.load(classifier_dir)


# ------------------------------------------------------------------ training config
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"epochs must be in \(0\.0, inf\]; found 0"),
        ({"learning_rate": -1e-5}, r"learning_rate must be .*found -1e-05"),
        ({"batch_size": 0}, r"batch_size must be >= 1; found 0"),
        ({"batch_size": 2.5}, r"batch_size must be an integer; found 2\.5"),
        ({"eval_fraction": 1.0}, r"eval_fraction must be in \[0\.0, 1\.0\); found 1\.0"),
        ({"max_steps": 0}, r"max_steps must be -1 .*found 0"),
        ({"max_length": 4}, r"max_length must be >= 8; found 4"),
        ({"epochs": float("nan")}, r"epochs must be a finite number; found nan"),
        ({"text_column": " "}, r"text_column must be a non-empty column name; found ' '"),
        ({"label_column": "text"}, r"both 'text'"),
    ],
)
def test_training_config_names_the_bad_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainingConfig(**kwargs)


def test_training_config_round_trips_through_dict() -> None:
    config = TrainingConfig(epochs=2.5, text_column="sentence")
    assert TrainingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['epoch'\]"):
        TrainingConfig.from_dict({"epoch": 3})


# ------------------------------------------------------------------ pure helpers
def test_stratified_split_holds_out_each_label_reproducibly() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 1
    kept, held = stratified_split(labels, 0.2, seed=7)
    assert sorted(kept + held) == list(range(16))
    assert [labels[i] for i in held].count("a") == 2
    assert [labels[i] for i in held].count("b") == 1
    assert "c" not in [labels[i] for i in held]  # a single example stays in training
    assert stratified_split(labels, 0.2, seed=7) == (kept, held)
    assert stratified_split(labels, 0.2, seed=8) != (kept, held)


def test_class_weights_favour_rare_labels() -> None:
    weights = class_weights(["a"] * 6 + ["b"] * 2, ["a", "b"])
    np.testing.assert_allclose(weights.numpy(), [8 / (2 * 6), 8 / (2 * 2)])


# ------------------------------------------------------------------ bad training input
def test_empty_training_file_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: the file has no records"):
        TextClassifier.train_from_files(empty, config=TINY)


def test_missing_column_lists_found_columns_and_the_flag(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"body": "x", "label": "a"}])
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['text'\]; found \['body', 'label'\].*--text-column"
    ):
        TextClassifier.train_from_files(path, config=TINY)


def test_configured_columns_are_used(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"body": "x", "tag": "a"}] * 3)
    config = TrainingConfig(text_column="body", label_column="tag")
    with pytest.raises(DataError, match=r"single label 'a' in all 3 rows"):
        TextClassifier.train_from_files(path, config=config)


def test_eval_labels_unknown_to_training_are_named(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows(TEXTS, LABELS))
    evaluation = write_csv(
        tmp_path / "eval.csv", rows(["a", "b", "c"], ["positive", "bogus", "mixed"])
    )
    with pytest.raises(DataError, match=r"eval labels \['bogus', 'mixed'\] never occur"):
        TextClassifier.train_from_files(train, evaluation, config=TINY)


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
        TextClassifier.train_from_files(path, config=TINY)


def test_single_class_training_data_is_rejected() -> None:
    with pytest.raises(DataError, match=r"single label 'positive'.*at least two labels"):
        TextClassifier.train(POSITIVE, ["positive"] * len(POSITIVE), config=TINY)


def test_empty_text_in_memory_training_data_is_rejected() -> None:
    with pytest.raises(DataError, match=r"training text #1 is empty"):
        TextClassifier.train(["good", "", "bad"], ["a", "b", "b"], config=TINY)


# ------------------------------------------------------------------ trained model
@pytest.mark.slow
def test_trained_classifier_describes_itself(classifier_dir: Path) -> None:
    meta = json.loads((classifier_dir / META_FILE).read_text(encoding="utf-8"))
    assert meta["labels"] == ["negative", "neutral", "positive"]
    assert meta["max_length"] == TINY.max_length
    assert meta["training_config"]["max_steps"] == 16
    assert meta["metrics"]["eval"]["n"] == 3
    assert meta["metrics"]["eval_source"] == "eval set"
    assert meta["metrics"]["n_train"] == len(TEXTS)
    assert meta["train_seconds"] > 0
    assert {"torch", "transformers", "threefold"} <= set(meta["libraries"])
    assert len(meta["version"]) == 12
    assert (classifier_dir / WEIGHTS_FILE).is_file()
    assert (classifier_dir / "tokenizer.json").is_file()


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
    model = TextClassifier.train(TEXTS, LABELS, config=config)
    metrics = model.metrics
    assert metrics["eval_source"].startswith("0.25 stratified split")
    assert metrics["eval"]["n"] == 6
    assert metrics["epochs_completed"] < 30
    assert metrics["best_step"] < metrics["steps"]


@pytest.mark.slow
def test_classifier_learns_the_training_data(classifier: TextClassifier) -> None:
    predicted = classifier.predict(TEXTS)
    accuracy = np.mean([p == y for p, y in zip(predicted, LABELS, strict=True)])
    assert accuracy >= 0.8


@pytest.mark.slow
def test_predict_proba_is_batched_and_deterministic(classifier: TextClassifier) -> None:
    first = classifier.predict_proba(TEXTS, batch_size=4)
    assert first.shape == (len(TEXTS), 3)
    assert first.dtype == np.float32
    np.testing.assert_allclose(first.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, classifier.predict_proba(TEXTS, batch_size=4))
    np.testing.assert_allclose(first, classifier.predict_proba(TEXTS, batch_size=64), atol=1e-5)
    labels = classifier.predict(TEXTS)
    assert labels == [classifier.labels[i] for i in first.argmax(axis=1)]
    assert classifier.predict_proba([]).shape == (0, 3)


@pytest.mark.slow
def test_saved_classifier_loads_with_identical_probabilities(
    classifier: TextClassifier, tmp_path: Path
) -> None:
    classifier.save(tmp_path / "again")
    reloaded = TextClassifier.load(tmp_path / "again")
    assert reloaded.labels == classifier.labels
    assert reloaded.version == classifier.version
    assert reloaded.config == classifier.config
    np.testing.assert_array_equal(reloaded.predict_proba(TEXTS), classifier.predict_proba(TEXTS))


@pytest.mark.slow
def test_int8_quantized_classifier_agrees_with_fp32(
    classifier: TextClassifier, classifier_dir: Path
) -> None:
    quantized = TextClassifier.load(classifier_dir, quantize=True)
    probabilities = quantized.predict_proba(TEXTS)
    assert quantized.quantized and quantized.device == "cpu"
    assert probabilities.shape == (len(TEXTS), len(classifier.labels))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    agreement = np.mean(np.array(quantized.predict(TEXTS)) == np.array(classifier.predict(TEXTS)))
    assert agreement >= 0.8
    with pytest.raises(ModelError, match="quantized classifier cannot be saved"):
        quantized.save(classifier_dir.parent / "quantized")


@pytest.mark.slow
def test_too_long_text_is_truncated_not_an_error(classifier: TextClassifier) -> None:
    long_text = " ".join(["profit rose sharply"] * 3000)
    assert len(classifier.tokenizer(long_text)["input_ids"]) > classifier.max_length
    probabilities = classifier.predict_proba([long_text, "sales fell"])
    assert probabilities.shape == (2, 3)
    assert np.isfinite(probabilities).all()


@pytest.mark.slow
def test_empty_text_at_prediction_is_a_data_error(classifier: TextClassifier) -> None:
    with pytest.raises(DataError, match=r"input text #1 is empty"):
        classifier.predict(["profit rose", "   "])
    with pytest.raises(ConfigError, match="expected a list of texts, found a single string"):
        classifier.predict("profit rose")


# ------------------------------------------------------------------ corrupt model directories
def test_missing_model_directory_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*threefold classifier train --out"):
        TextClassifier.load(tmp_path / "nowhere")


def test_directory_without_metadata_is_not_a_classifier(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelError, match=r"threefold_classifier\.json is missing.*config\.json"):
        TextClassifier.load(tmp_path)


@pytest.fixture
def copied_dir(classifier_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(classifier_dir, tmp_path / "copy"))


@pytest.mark.slow
def test_corrupt_metadata_is_named(copied_dir: Path) -> None:
    (copied_dir / META_FILE).write_text('{"labels": [', encoding="utf-8")
    with pytest.raises(ModelError, match=r"threefold_classifier\.json is corrupt"):
        TextClassifier.load(copied_dir)


@pytest.mark.slow
def test_missing_weights_file_is_named(copied_dir: Path) -> None:
    (copied_dir / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match=r"model\.safetensors is missing.*incomplete"):
        TextClassifier.load(copied_dir)


@pytest.mark.slow
def test_truncated_weights_file_is_named(copied_dir: Path) -> None:
    weights = copied_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"cannot load the weights in .*model\.safetensors"):
        TextClassifier.load(copied_dir)


@pytest.mark.slow
def test_changed_weights_do_not_match_the_recorded_version(copied_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = copied_dir / WEIGHTS_FILE
    tensors = load_file(weights)
    tensors["classifier.bias"] = tensors["classifier.bias"] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"do not match version .* changed or corrupted"):
        TextClassifier.load(copied_dir)


@pytest.mark.slow
def test_quantization_refuses_a_gpu_device(classifier_dir: Path) -> None:
    with pytest.raises(ConfigError, match="int8 quantization runs on the CPU only"):
        TextClassifier.load(classifier_dir, quantize=True, device="cuda")
