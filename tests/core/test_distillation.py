"""Knowledge distillation (`TrainingConfig.teacher`): the loss, both kinds of teacher, errors."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from support.classifier_data import LABELS, TEXTS, TINY

from threefold.core.base_model import resolve_base_model
from threefold.core.classifier import TextClassifier
from threefold.core.classifier_training import train_classifier
from threefold.core.errors import ConfigError
from threefold.core.training_config import TrainingConfig
from threefold.core.training_recipe import distillation_loss

PLAIN = dataclasses.replace(TINY, max_steps=8, eval_fraction=0.0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fine-tuned classifier, saved: the teacher of the students below."""
    folder = tmp_path_factory.mktemp("teacher") / "model"
    train_classifier(TEXTS, LABELS, config=dataclasses.replace(TINY, eval_fraction=0.0)).save(
        folder
    )
    return folder


def test_distillation_loss_is_zero_when_the_student_matches_the_teacher() -> None:
    teacher = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    matching = torch.log(teacher) + 3.0  # logits up to a constant shift: same distribution
    for temperature in (1.0, 2.0, 4.0):
        assert float(distillation_loss(matching, teacher, temperature)) == pytest.approx(
            0.0, abs=1e-6
        )
    wrong = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    assert float(distillation_loss(wrong, teacher, 2.0)) > 0.5
    # a teacher probability of exactly 0 stays finite
    assert torch.isfinite(distillation_loss(wrong, torch.tensor([[1.0, 0.0, 0.0]] * 2), 2.0))


def test_options_are_checked_and_travel_with_the_saved_model(tmp_path: Path) -> None:
    for option, value in [("distill_alpha", 1.5), ("distill_temperature", 0.0)]:
        with pytest.raises(ConfigError, match=option):
            TrainingConfig(**{option: value})
    with pytest.raises(ConfigError, match="teacher must be a classifier or base model directory"):
        TrainingConfig(teacher="  ")


def _probabilities(config: TrainingConfig, labels: list[str] = LABELS) -> np.ndarray:
    return train_classifier(TEXTS, labels, config=config).predict_proba(TEXTS)


@pytest.mark.slow
def test_at_alpha_one_a_trained_teacher_alone_drives_the_student(teacher_dir: Path) -> None:
    config = dataclasses.replace(PLAIN, teacher=str(teacher_dir), distill_alpha=1.0)
    student = _probabilities(config)
    shuffled = LABELS[:]
    random.Random(3).shuffle(shuffled)  # same label counts, so the same class weights
    assert np.allclose(student, _probabilities(config, shuffled), atol=1e-6)
    assert not np.allclose(student, _probabilities(PLAIN), atol=1e-4)
    half = _probabilities(dataclasses.replace(config, distill_alpha=0.5))
    assert not np.allclose(half, student, atol=1e-4) and not np.allclose(
        half, _probabilities(PLAIN), atol=1e-4
    )


@pytest.mark.slow
def test_a_base_model_teacher_is_fine_tuned_on_the_same_split_first(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY, max_steps=6, eval_fraction=0.3, teacher=resolve_base_model(None)
    )
    model = train_classifier(TEXTS, LABELS, config=config)
    teacher = model.metrics["teacher"]
    assert teacher["base_model"] == resolve_base_model(None)
    assert "max_steps 6" in teacher["stop_reason"]
    assert teacher["eval"]["n"] == model.metrics["eval"]["n"]  # the student's eval split
    assert (teacher["alpha"], teacher["temperature"]) == (0.5, 2.0)
    model.save(tmp_path / "student")
    loaded = TextClassifier.load(tmp_path / "student")
    assert loaded.config == config
    assert loaded.metrics["teacher"]["eval"] == teacher["eval"]


@pytest.mark.slow
def test_a_teacher_with_other_labels_is_refused_naming_both(teacher_dir: Path) -> None:
    labels = ["up" if y == "positive" else "down" for y in LABELS]
    config = dataclasses.replace(PLAIN, teacher=str(teacher_dir))
    with pytest.raises(ConfigError, match=r"trained on labels \['negative', 'neutral', "):
        train_classifier(TEXTS, labels, config=config)


def test_a_teacher_on_the_contrastive_path_is_refused_before_training(tmp_path: Path) -> None:
    config = TrainingConfig(teacher=str(tmp_path), output_progress=False)  # auto: contrastive here
    with pytest.raises(ConfigError, match="distils on the fine-tune path only"):
        train_classifier(TEXTS, LABELS, config=config)


@pytest.mark.slow
def test_the_cli_distils_and_reports_the_teacher(teacher_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from support.classifier_data import rows, write_csv

    from threefold.apps.cli import cli

    train = write_csv(tmp_path / "train.csv", rows(TEXTS, LABELS))
    result = CliRunner().invoke(
        cli,
        ["classifier", "train", "--train", str(train), "--out", str(tmp_path / "m"),
         "--strategy", "fine-tune", "--max-steps", "4", "--eval-fraction", "0", "--no-progress",
         "--teacher", str(teacher_dir), "--distill-alpha", "0.7", "--distill-temperature", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["teacher"]["source"] == str(teacher_dir)
    assert summary["teacher"]["stop_reason"] == "loaded, not trained here"
    assert (summary["teacher"]["alpha"], summary["teacher"]["temperature"]) == (0.7, 3.0)
