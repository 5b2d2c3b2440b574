"""TextClassifier: a tiny fine-tuned model predicts, saves, loads back, quantizes; bad dirs fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.classifier_data import LABELS, TEXTS, TINY, rows, write_csv

from threefold.core.classifier import META_FILE, WEIGHTS_FILE, TextClassifier
from threefold.core.classifier_training import train_classifier_from_files
from threefold.core.errors import ConfigError, DataError, ModelError


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
    model = train_classifier_from_files(train, evaluation, config=TINY)
    model.save(folder / "model")
    return folder / "model"


@pytest.fixture(scope="session")
def classifier(classifier_dir: Path) -> TextClassifier:
    return TextClassifier.load(classifier_dir, quantize=False)


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
    reloaded = TextClassifier.load(tmp_path / "again", quantize=False)
    assert reloaded.labels == classifier.labels
    assert reloaded.version == classifier.version
    assert reloaded.config == classifier.config
    np.testing.assert_array_equal(reloaded.predict_proba(TEXTS), classifier.predict_proba(TEXTS))


@pytest.mark.slow
def test_training_records_the_int8_decision_and_loading_follows_it(classifier_dir: Path) -> None:
    meta = json.loads((classifier_dir / META_FILE).read_text(encoding="utf-8"))
    int8 = meta["metrics"]["int8"]
    assert set(int8) == {
        "accuracy",
        "accuracy_drop",
        "eval_size",
        "default_on_cpu",
        "reason",
        "rule",
    }
    fp32 = meta["metrics"]["eval"]["accuracy"]
    assert int8["accuracy_drop"]["label"] == pytest.approx(fp32 - int8["accuracy"]["label"])
    assert int8["eval_size"] == {"label": meta["metrics"]["eval"]["n"]}
    enough = int8["eval_size"]["label"] >= 200
    assert int8["default_on_cpu"] == (enough and int8["accuracy_drop"]["label"] <= 0.005)
    assert enough or int8["reason"].startswith("fp32: too few eval texts")
    assert TextClassifier.load(classifier_dir, device="cpu").quantized == int8["default_on_cpu"]
    automatic = TextClassifier.load(classifier_dir)  # int8 only where it runs: on the CPU
    assert automatic.quantized == (int8["default_on_cpu"] and automatic.device == "cpu")
    assert not TextClassifier.load(classifier_dir, quantize=False).quantized


def test_saving_into_an_unwritable_place_is_a_model_error_naming_it(
    classifier: TextClassifier, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(ModelError, match=r"cannot save the classifier into .*notes\.txt/sub: "):
        classifier.save(tmp_path / "notes.txt" / "sub")


def test_int8_decision_allows_half_a_point_on_every_task() -> None:
    from threefold.core.classifier import int8_decision
    from threefold.core.model_directory import quantize_by_default

    sizes = {"topic": 500, "sentiment": 200}
    kept = int8_decision(
        {"topic": 0.9, "sentiment": 0.8}, {"topic": 0.896, "sentiment": 0.8}, sizes
    )
    assert kept["default_on_cpu"] and kept["accuracy_drop"] == {"topic": 0.004, "sentiment": 0.0}
    assert kept["reason"].startswith("int8: int8 costs 0.4 point(s)")
    lost = int8_decision(
        {"topic": 0.9, "sentiment": 0.8}, {"topic": 0.91, "sentiment": 0.794}, sizes
    )
    assert not lost["default_on_cpu"]  # one task losing 0.6 point is enough to stay fp32
    assert "(sentiment, 200 eval texts)" in lost["reason"]
    assert quantize_by_default({"int8": kept}, "cpu")
    assert not quantize_by_default({"int8": kept}, "cuda")
    assert not quantize_by_default({"int8": lost}, "cpu")
    assert not quantize_by_default({}, "cpu")  # no eval split, no measurement: fp32


def test_int8_decision_stays_fp32_when_the_eval_split_is_too_small_to_measure_half_a_point() -> (
    None
):
    from threefold.core.classifier import int8_decision

    # no drop at all, but on 32 sentiment texts one error is 3 points: not a measurement
    small = int8_decision(
        {"topic": 0.9, "sentiment": 0.8},
        {"topic": 0.9, "sentiment": 0.8},
        {"topic": 400, "sentiment": 32},
    )
    assert not small["default_on_cpu"]
    assert small["eval_size"] == {"topic": 400, "sentiment": 32}
    assert "too few eval texts" in small["reason"] and "sentiment 32" in small["reason"]
    assert "topic 400" not in small["reason"] and "--quantize" in small["reason"]


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
