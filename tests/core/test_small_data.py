"""Small data: the path choice and its reason, contrastive pairs, the logistic head, the model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from support.classifier_data import LABELS, TEXTS

from threefold.core.classifier import META_FILE, TextClassifier
from threefold.core.classifier_training import train_classifier
from threefold.core.embedding_classifier import ARCHITECTURE, HEAD_FILE
from threefold.core.errors import ConfigError, ModelError
from threefold.core.small_data import (
    CONTRASTIVE,
    FINE_TUNE,
    choose_strategy,
    contrastive_pairs,
    fit_logistic_head,
    pair_budget,
)
from threefold.core.training_config import TrainingConfig


# ------------------------------------------------------------------ path choice
def test_auto_trains_contrastively_below_the_threshold_and_says_why() -> None:
    labels = ["a"] * 100 + ["b"] * 63
    choice = choose_strategy(labels, TrainingConfig())
    assert choice.strategy == CONTRASTIVE
    assert "the rarest label, 'b', has 63 training examples (< 64 per label)" in choice.reason


def test_auto_fine_tunes_when_every_label_reaches_the_threshold() -> None:
    choice = choose_strategy(["a"] * 64 + ["b"] * 70, TrainingConfig())
    assert choice.strategy == FINE_TUNE
    assert "every label has >= 64 training examples" in choice.reason


def test_a_requested_strategy_wins_and_the_reason_says_so() -> None:
    choice = choose_strategy(["a"] * 3 + ["b"] * 3, TrainingConfig(strategy="fine-tune"))
    assert choice.strategy == FINE_TUNE
    assert choice.reason.startswith("strategy 'fine-tune' was requested")


def test_threshold_is_configurable() -> None:
    config = TrainingConfig(small_data_threshold=4)
    assert choose_strategy(["a"] * 5 + ["b"] * 4, config).strategy == FINE_TUNE


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"strategy must be one of \['auto', 'contrastive', "):
        TrainingConfig(strategy="setfit")


# ------------------------------------------------------------------ contrastive pairs
def test_pairs_are_half_same_label_half_different_label() -> None:
    labels = ["a", "a", "a", "b", "b", "c"]
    pairs = contrastive_pairs(labels, 60, seed=3)
    assert len(pairs) == 60
    assert Counter(target for _, _, target in pairs) == {1.0: 30, 0.0: 30}
    for i, j, target in pairs:
        assert (labels[i] == labels[j]) == (target == 1.0)
    assert all(i != j for i, j, target in pairs if target == 1.0 and labels[i] != "c")
    assert contrastive_pairs(labels, 60, seed=3) == pairs
    assert contrastive_pairs(labels, 60, seed=4) != pairs


def test_pair_budget_grows_with_the_data_and_is_capped() -> None:
    assert pair_budget(24) == 640
    assert pair_budget(80) == 800
    assert pair_budget(10_000) == 1000


def test_logistic_head_separates_separable_embeddings() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    ids = np.repeat(np.arange(3), 10)
    points = centres[ids] + 0.05 * rng.standard_normal((30, 8))
    head = fit_logistic_head(torch.tensor(points, dtype=torch.float32), torch.tensor(ids), 3)
    predicted = head(torch.tensor(points, dtype=torch.float32)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predicted, ids)


# ------------------------------------------------------------------ the small-data model
@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A contrastive classifier chosen by `auto` on 20 tiny headlines (6-7 per label)."""
    config = TrainingConfig(max_steps=24, batch_size=16, eval_fraction=0.0, output_progress=False)
    # 24 of the 40 steps the 640-pair budget would take
    model = train_classifier(TEXTS, LABELS, config=config)
    out = tmp_path_factory.mktemp("small") / "model"
    model.save(out)
    return out


@pytest.mark.slow
def test_auto_picks_the_contrastive_path_and_records_why(small_model_dir: Path) -> None:
    meta = json.loads((small_model_dir / META_FILE).read_text(encoding="utf-8"))
    assert meta["architecture"] == ARCHITECTURE
    metrics = meta["metrics"]
    assert metrics["strategy"] == CONTRASTIVE
    assert (
        "small data: the rarest label, 'neutral', has 6 training examples"
        in (metrics["strategy_reason"])
    )
    assert metrics["stop_reason"].startswith("contrastive pass complete: 24 steps")
    assert metrics["steps"] == 24
    assert metrics["warnings"] == []
    assert metrics["train_accuracy"] >= 0.8
    assert (small_model_dir / HEAD_FILE).is_file()


@pytest.mark.slow
def test_small_data_model_round_trips_with_identical_probabilities(
    small_model_dir: Path, tmp_path: Path
) -> None:
    first = TextClassifier.load(small_model_dir)
    probabilities = first.predict_proba(TEXTS)
    first.save(tmp_path / "again")
    again = TextClassifier.load(tmp_path / "again")
    np.testing.assert_array_equal(again.predict_proba(TEXTS), probabilities)
    assert again.version == first.version
    predicted = first.predict(TEXTS)
    assert set(predicted) == set(LABELS)
    assert np.mean([p == y for p, y in zip(predicted, LABELS, strict=True)]) >= 0.8


@pytest.mark.slow
def test_small_data_body_loads_in_transformers_directly(small_model_dir: Path) -> None:
    from transformers import AutoModel

    body = AutoModel.from_pretrained(str(small_model_dir))
    assert body.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


@pytest.mark.slow
def test_small_data_model_quantizes_to_int8(small_model_dir: Path) -> None:
    fp32 = TextClassifier.load(small_model_dir)
    int8 = TextClassifier.load(small_model_dir, quantize=True)
    agreement = np.mean(np.array(fp32.predict(TEXTS)) == np.array(int8.predict(TEXTS)))
    assert agreement >= 0.9


@pytest.mark.slow
def test_missing_head_file_is_named(small_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_model_dir, broken)
    (broken / HEAD_FILE).unlink()
    with pytest.raises(ModelError, match=r"head\.safetensors is missing"):
        TextClassifier.load(broken)
