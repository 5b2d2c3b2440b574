"""Small data: the path choice and its reason, contrastive pairs, the logistic head, the model."""

from __future__ import annotations

import json
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
    contrastive_steps,
    fit_logistic_head,
    pair_targets,
)
from threefold.core.training_config import TrainingConfig


# ------------------------------------------------------------------ path choice
def test_auto_trains_contrastively_below_the_threshold_and_says_why() -> None:
    labels = ["a"] * 130 + ["b"] * 124
    choice = choose_strategy(labels, TrainingConfig())
    assert choice.strategy == CONTRASTIVE
    assert choice.reason.startswith(
        "small data: 254 training examples over 2 labels, 127 per label on average (the "
        "rarest, 'b', has 124), below 128 per label"
    )


def test_auto_fine_tunes_from_the_threshold_on_average_and_says_why() -> None:
    choice = choose_strategy(["a"] * 128 + ["b"] * 128, TrainingConfig())
    assert choice.strategy == FINE_TUNE
    assert choice.reason.startswith("enough data: 256 training examples over 2 labels, 128 per")


def test_one_rare_label_in_a_large_set_does_not_force_the_small_data_path() -> None:
    choice = choose_strategy(["common"] * 12_000 + ["rare"] * 31, TrainingConfig())
    assert choice.strategy == FINE_TUNE
    assert "the rarest, 'rare', has 31" in choice.reason


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
def test_pair_targets_mark_same_label_pairs_and_balance_the_two_kinds() -> None:
    target, weight = pair_targets(torch.tensor([0, 0, 1, 1, 1]))
    assert target[0, 1] == 1 and target[2, 4] == 1 and target[0, 2] == 0
    assert torch.count_nonzero(torch.tril(weight)) == 0  # each pair once, no self-pairs
    same = weight[target.bool()].sum()
    different = weight[~target.bool()].sum()
    assert same == pytest.approx(0.5) and different == pytest.approx(0.5)
    assert weight[0, 1] == pytest.approx(0.5 / 4)  # 4 same-label pairs: (0,1), (2,3), (2,4), (3,4)
    assert weight[0, 2] == pytest.approx(0.5 / 6)  # 6 different-label pairs


def test_a_batch_of_one_label_only_pulls_together() -> None:
    _, weight = pair_targets(torch.tensor([2, 2, 2]))
    assert weight.sum() == pytest.approx(1.0)


def test_contrastive_steps_grow_with_the_data_within_bounds() -> None:
    assert contrastive_steps(24, 24) == 20
    assert contrastive_steps(96, 32) == 30
    assert contrastive_steps(10_000, 32) == 60


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
    config = TrainingConfig(max_steps=12, batch_size=16, eval_fraction=0.0, output_progress=False)
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
        "small data: 20 training examples over 3 labels, 7 per label on average (the rarest, "
        "'neutral', has 6)" in (metrics["strategy_reason"])
    )
    assert metrics["stop_reason"].startswith(
        "contrastive pass complete: 12 steps of 16 examples (1440 sentence pairs) (capped by"
    )
    assert metrics["steps"] == 12
    assert metrics["warnings"] == []
    assert metrics["train_accuracy"] >= 0.8
    assert (small_model_dir / HEAD_FILE).is_file()


@pytest.mark.slow
def test_small_data_model_round_trips_with_identical_probabilities(
    small_model_dir: Path, tmp_path: Path
) -> None:
    first = TextClassifier.load(small_model_dir, quantize=False)
    probabilities = first.predict_proba(TEXTS)
    first.save(tmp_path / "again")
    again = TextClassifier.load(tmp_path / "again", quantize=False)
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
    fp32 = TextClassifier.load(small_model_dir, quantize=False)
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
