"""Multi-task model: one body, a topic and a sentiment head, saved as one directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.classifier_data import LABELS, NEUTRAL, POSITIVE, TEXTS

from threefold.core.errors import DataError, ModelError
from threefold.core.multitask import (
    HEADS_FILE,
    META_FILE,
    MultiTaskClassifier,
    is_multitask_dir,
    merge_task_data,
    train_multitask,
)
from threefold.core.training_config import TrainingConfig

TOPICS = ["results"] * 10 + ["other"] * 10
CONFIG = TrainingConfig(  # the fine-tune path (data this small would take the contrastive one)
    max_steps=12,
    batch_size=8,
    learning_rate=2e-4,
    warmup_ratio=0.0,
    eval_fraction=0.25,
    strategy="fine-tune",
)


@pytest.fixture(scope="module")
def multitask_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = train_multitask(TEXTS, {"topic": TOPICS, "sentiment": LABELS}, config=CONFIG)
    out = tmp_path_factory.mktemp("multitask") / "model"
    model.save(out)
    return out


@pytest.mark.slow
def test_multitask_directory_describes_every_task(multitask_dir: Path) -> None:
    meta = json.loads((multitask_dir / META_FILE).read_text(encoding="utf-8"))
    assert meta["tasks"] == {
        "topic": ["other", "results"],
        "sentiment": ["negative", "neutral", "positive"],
    }
    assert set(meta["metrics"]["eval"]) == {"topic", "sentiment"}
    assert meta["metrics"]["stop_reason"] == "reached max_steps 12"
    assert (multitask_dir / HEADS_FILE).is_file()
    assert is_multitask_dir(multitask_dir)


@pytest.mark.slow
def test_multitask_round_trip_gives_identical_probabilities(
    multitask_dir: Path, tmp_path: Path
) -> None:
    first = MultiTaskClassifier.load(multitask_dir, quantize=False)
    probabilities = first.predict_proba(TEXTS, batch_size=4)
    assert probabilities["topic"].shape == (len(TEXTS), 2)
    assert probabilities["sentiment"].shape == (len(TEXTS), 3)
    first.save(tmp_path / "again")
    again = MultiTaskClassifier.load(tmp_path / "again", quantize=False)
    assert again.version == first.version
    for task, rows in again.predict_proba(TEXTS, batch_size=4).items():
        np.testing.assert_array_equal(rows, probabilities[task])


@pytest.mark.slow
def test_int8_is_measured_and_its_recorded_decision_is_the_cpu_default(
    multitask_dir: Path,
) -> None:
    meta = json.loads((multitask_dir / META_FILE).read_text(encoding="utf-8"))
    int8 = meta["metrics"]["int8"]
    assert set(int8["accuracy"]) == set(int8["accuracy_drop"]) == {"topic", "sentiment"}
    assert set(int8["eval_size"]) == {"topic", "sentiment"}
    enough = min(int8["eval_size"].values()) >= 200
    assert int8["default_on_cpu"] == (enough and max(int8["accuracy_drop"].values()) <= 0.005)
    loaded = MultiTaskClassifier.load(multitask_dir, device="cpu")
    assert loaded.quantized == int8["default_on_cpu"]
    assert MultiTaskClassifier.load(multitask_dir, quantize=True).quantized
    assert not MultiTaskClassifier.load(multitask_dir, quantize=False).quantized


@pytest.mark.slow
def test_multitask_body_loads_in_transformers_directly(multitask_dir: Path) -> None:
    from transformers import AutoModel

    assert AutoModel.from_pretrained(str(multitask_dir)).config.hidden_size == 384


@pytest.mark.slow
def test_changed_head_weights_are_detected(multitask_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(multitask_dir, copy)
    heads = load_file(copy / HEADS_FILE)
    heads["topic.bias"] = heads["topic.bias"] + 1.0
    save_file(heads, copy / HEADS_FILE)
    with pytest.raises(ModelError, match=r"do not match version"):
        MultiTaskClassifier.load(copy)


def test_a_single_label_task_is_rejected() -> None:
    with pytest.raises(DataError, match=r"task 'topic' has a single label 'results'"):
        train_multitask(TEXTS, {"topic": ["results"] * 20, "sentiment": LABELS}, config=CONFIG)


def test_a_directory_without_the_meta_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"threefold_multitask\.json is missing"):
        MultiTaskClassifier.load(tmp_path)


def test_merged_task_data_labels_a_shared_text_for_both_tasks_and_the_rest_for_one() -> None:
    texts, targets = merge_task_data(
        {
            "topic": (["rates cut", "rates cut", "new phone"], ["macro", "macro", "product"]),
            "sentiment": (["rates cut", "profit fell"], ["positive", "negative"]),
        }
    )
    assert texts == ["rates cut", "rates cut", "new phone", "profit fell"]
    assert targets == {
        "topic": ["macro", "macro", "product", None],
        "sentiment": ["positive", None, None, "negative"],
    }


def test_merged_task_data_refuses_a_blank_label() -> None:
    with pytest.raises(DataError, match=r"sentiment training example #1 has an empty label"):
        merge_task_data({"sentiment": (["a", "b"], ["positive", " "])})


def test_a_text_labelled_for_no_task_is_refused() -> None:
    with pytest.raises(DataError, match=r"text #3 has no label for any task"):
        train_multitask(
            ["a", "b", "c", "d"],
            {"topic": ["x", "y", "x", None], "sentiment": ["p", None, "n", None]},
            config=CONFIG,
        )


@pytest.mark.slow
def test_each_head_learns_and_is_evaluated_on_its_own_labelled_texts() -> None:
    topic_texts = [*POSITIVE[:4], *NEUTRAL[:4], "central bank holds rates", "inflation eased"]
    topics = ["results"] * 4 + ["other"] * 4 + ["macro"] * 2
    texts, targets = merge_task_data({"topic": (topic_texts, topics), "sentiment": (TEXTS, LABELS)})
    assert len(texts) == len(TEXTS) + 2  # the eight shared headlines carry both labels
    model = train_multitask(texts, targets, config=CONFIG)
    metrics = model.metrics
    assert metrics["n_train_per_task"]["topic"] + metrics["eval"]["topic"]["n"] == 10
    assert metrics["n_train_per_task"]["sentiment"] + metrics["eval"]["sentiment"]["n"] == 20
    assert np.isfinite(metrics["train_loss"])
    assert model.tasks["topic"] == ["macro", "other", "results"]
    probabilities = model.predict_proba(["inflation eased", "profit rose sharply"])
    assert probabilities["topic"].shape == (2, 3) and probabilities["sentiment"].shape == (2, 3)


def test_single_task_levers_are_named_as_unused_not_silently_dropped(caplog) -> None:
    import dataclasses

    config = dataclasses.replace(CONFIG, max_steps=2, rdrop_alpha=1.0, checkpoint_average=2)
    with caplog.at_level("WARNING", logger="threefold.core.multitask"):
        model = train_multitask(TEXTS, {"topic": TOPICS, "sentiment": LABELS}, config=config)
    (warning,) = model.metrics["warnings"]
    assert "'rdrop_alpha': 1.0" in warning and "'checkpoint_average': 2" in warning
    assert "did not use them" in caplog.text
    plain = train_multitask(
        TEXTS,
        {"topic": TOPICS, "sentiment": LABELS},
        config=dataclasses.replace(CONFIG, max_steps=2),
    )
    assert plain.metrics["warnings"] == []


@pytest.mark.slow
def test_small_data_takes_the_contrastive_path_in_one_model_and_round_trips(
    tmp_path: Path,
) -> None:
    import dataclasses

    config = dataclasses.replace(CONFIG, strategy="auto", max_steps=8, learning_rate=2e-5, epochs=7)
    model = train_multitask(TEXTS, {"topic": TOPICS, "sentiment": LABELS}, config=config)
    assert model.metrics["strategy"] == "contrastive"
    (warning,) = model.metrics["warnings"]  # said, not silently dropped
    assert warning.startswith("epochs=7 (--epochs) not used: the contrastive path")
    assert (
        "the topic and sentiment data takes the contrastive path"
        in (model.metrics["strategy_reason"])
    )
    assert model.metrics["stop_reason"].startswith(  # each task its own batches and steps
        "contrastive pass complete: 8 steps (8 and 8 for the 2 label sets, in batches of 8 and 8"
    )
    assert model.model.normalize
    predicted = model.predict(TEXTS)  # each head is a logistic regression fitted on its texts
    assert np.mean([p == y for p, y in zip(predicted["sentiment"], LABELS, strict=True)]) >= 0.8
    assert len(set(predicted["sentiment"])) == 3 and len(set(predicted["topic"])) == 2
    model.save(tmp_path / "small")
    meta = json.loads((tmp_path / "small" / META_FILE).read_text(encoding="utf-8"))
    assert meta["pooling"] == "normalized mean"
    loaded = MultiTaskClassifier.load(tmp_path / "small", quantize=False)
    assert loaded.model.normalize
    probabilities = model.predict_proba(TEXTS)
    for task, rows in loaded.predict_proba(TEXTS).items():
        np.testing.assert_allclose(rows, probabilities[task], atol=1e-6)


@pytest.mark.slow
def test_a_directory_from_before_the_pooling_record_loads_as_mean_pooled(
    multitask_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "old"
    shutil.copytree(multitask_dir, copy)
    meta = json.loads((copy / META_FILE).read_text(encoding="utf-8"))
    assert meta.pop("pooling") == "mean"
    (copy / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    assert not MultiTaskClassifier.load(copy, quantize=False).model.normalize
    meta["pooling"] = "max"
    (copy / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match=r"has pooling 'max'; this threefold reads"):
        MultiTaskClassifier.load(copy)


def test_a_missing_directory_is_named_with_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*alerts train --multitask"):
        MultiTaskClassifier.load(tmp_path / "nowhere")


def test_metadata_that_is_not_an_object_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ModelError, match=r"is corrupt: expected a JSON object"):
        MultiTaskClassifier.load(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tasks", ["topic", "sentiment"], r"'tasks' must map each task to two or more labels"),
        ("tasks", {"topic": ["results"]}, r"'tasks' must map each task to two or more labels"),
        ("training_config", {"max_steps": -3}, r"has an unusable training_config"),
    ],
)
def test_corrupt_metadata_fields_are_model_errors(
    multitask_dir: Path, tmp_path: Path, key: str, value: object, message: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(multitask_dir, copy)
    meta = json.loads((copy / META_FILE).read_text(encoding="utf-8"))
    meta[key] = value
    (copy / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match=message):
        MultiTaskClassifier.load(copy)
