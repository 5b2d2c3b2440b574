"""Fine-tune levers: layer-wise LR decay, FGM, R-Drop, label smoothing, checkpoint averaging
and text augmentation, on tiny data."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from support.classifier_data import LABELS, TEXTS, TINY
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from threefold.core.base_model import resolve_base_model
from threefold.core.classifier import TextClassifier
from threefold.core.classifier_training import train_classifier
from threefold.core.errors import ConfigError
from threefold.core.training_config import TrainingConfig
from threefold.core.training_recipe import (
    CheckpointAverage,
    EmbeddingAdversary,
    classification_loss,
    layer_depth,
    layerwise_param_groups,
    perturbed,
    rdrop_loss,
    with_augmented_copies,
)


@pytest.fixture(scope="module")
def base_classifier():
    base = resolve_base_model(None)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
    return AutoTokenizer.from_pretrained(base), model


def test_layer_depth_orders_embeddings_layers_and_head() -> None:
    assert layer_depth("bert.embeddings.word_embeddings.weight", 6) == 0
    assert layer_depth("bert.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert layer_depth("bert.encoder.layer.5.output.dense.bias", 6) == 6
    assert layer_depth("classifier.weight", 6) == 7
    assert layer_depth("bert.pooler.dense.weight", 6) == 7


def test_layerwise_groups_decay_the_rate_downwards_and_cover_every_parameter(
    base_classifier,
) -> None:
    _, model = base_classifier
    groups = layerwise_param_groups(model, 1e-4, 0.5, 0.01)
    grouped = [id(p) for group in groups for p in group["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)  # each parameter once
    rate = {id(p): group["lr"] for group in groups for p in group["params"]}
    decay = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.weight"])] == pytest.approx(1e-4)
    assert rate[id(named["bert.encoder.layer.5.output.dense.weight"])] == pytest.approx(5e-5)
    assert rate[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 / 2**7)
    assert decay[id(named["bert.encoder.layer.5.output.dense.weight"])] == 0.01
    assert decay[id(named["bert.encoder.layer.5.output.dense.bias"])] == 0.0
    assert decay[id(named["bert.encoder.layer.5.output.LayerNorm.weight"])] == 0.0


def test_rdrop_adds_nothing_for_identical_passes_and_penalizes_disagreement() -> None:
    labels = torch.tensor([0, 2])
    logits = torch.tensor([[2.0, 0.1, -1.0], [0.0, 0.5, 1.5]])
    other = torch.tensor([[-1.0, 2.0, 0.0], [1.5, 0.0, -0.5]])

    def loss(scores):
        return classification_loss(scores, labels, None, 0.0)

    assert rdrop_loss(logits, logits, loss, 4.0) == pytest.approx(float(loss(logits)))
    mean = 0.5 * (loss(logits) + loss(other))
    assert rdrop_loss(logits, other, loss, 4.0) > mean + 0.1


def test_label_smoothing_raises_the_loss_of_a_confident_right_answer() -> None:
    logits, labels = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([0])
    plain = classification_loss(logits, labels, None, 0.0)
    smoothed = classification_loss(logits, labels, None, 0.1)
    assert plain < 0.01 < smoothed


def test_fgm_moves_the_embeddings_by_epsilon_and_restores_them_exactly(base_classifier) -> None:
    tokenizer, model = base_classifier
    model.zero_grad()
    before = model.get_input_embeddings().weight.detach().clone()
    adversary = EmbeddingAdversary(model, epsilon=0.5)
    assert not adversary.attack()  # no gradient yet: nothing moved
    batch = tokenizer(["profit rose sharply"], return_tensors="pt")
    model(**batch, labels=torch.tensor([1])).loss.backward()
    assert adversary.attack()
    moved = model.get_input_embeddings().weight.detach() - before
    assert float(torch.linalg.vector_norm(moved)) == pytest.approx(0.5, rel=1e-3)
    adversary.restore()
    assert torch.equal(model.get_input_embeddings().weight.detach(), before)
    model.zero_grad()


def _probabilities(config: TrainingConfig) -> torch.Tensor:
    model = train_classifier(TEXTS, LABELS, config=dataclasses.replace(config, eval_fraction=0.0))
    return torch.tensor(model.predict_proba(TEXTS[:4]))


@pytest.mark.slow
def test_each_lever_changes_training_and_plain_training_is_reproducible(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, max_steps=6)
    plain = _probabilities(config)
    assert torch.allclose(plain, _probabilities(config), atol=1e-6)  # same seed, same model
    for lever, value in [
        ("layer_lr_decay", 0.5),
        ("adversarial_epsilon", 1.0),
        ("rdrop_alpha", 4.0),
        ("label_smoothing", 0.2),
        ("group_by_length", not TINY.group_by_length),
    ]:
        changed = _probabilities(dataclasses.replace(config, **{lever: value}))
        assert not torch.allclose(plain, changed, atol=1e-4), f"{lever} had no effect"


def test_all_levers_together_still_learn_and_are_saved_with_the_model(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY,
        max_steps=24,
        eval_fraction=0.0,
        layer_lr_decay=0.8,
        adversarial_epsilon=1.0,
        rdrop_alpha=1.0,
        label_smoothing=0.1,
    )
    model = train_classifier(TEXTS, LABELS, config=config)
    assert model.metrics["train_accuracy"] >= 0.8
    model.save(tmp_path / "model")
    loaded = TextClassifier.load(tmp_path / "model")
    assert loaded.config == config


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("layer_lr_decay", 0.0),
        ("layer_lr_decay", 1.5),
        ("adversarial_epsilon", -1.0),
        ("rdrop_alpha", float("nan")),
        ("label_smoothing", 1.0),
        ("checkpoint_average", 0),
        ("checkpoint_average", 21),
        ("augment_copies", -1),
        ("augment_copies", 1.5),
    ],
)
def test_out_of_range_levers_are_config_errors_naming_the_option(option, value) -> None:
    with pytest.raises(ConfigError, match=option):
        TrainingConfig(**{option: value})


def test_a_perturbed_text_keeps_only_its_own_words_and_drops_some() -> None:
    rng = random.Random(0)
    text = "the company beat expectations again this quarter"
    for _ in range(20):
        words = perturbed(text, rng).split()
        assert 1 <= len(words) < len(text.split())
        assert not Counter(words) - Counter(text.split())
    assert perturbed("profit", rng) == "profit"
    assert len(perturbed("profit rose", rng).split()) == 1


def test_augmented_copies_follow_the_originals_with_their_labels_and_are_seeded() -> None:
    texts, labels = with_augmented_copies(TEXTS, LABELS, 2, seed=3)
    assert texts[: len(TEXTS)] == TEXTS and labels == LABELS * 3
    assert texts != TEXTS * 3
    assert with_augmented_copies(TEXTS, LABELS, 2, seed=3) == (texts, labels)
    assert with_augmented_copies(TEXTS, LABELS, 2, seed=4)[0] != texts


def test_checkpoint_average_is_the_mean_of_the_last_snapshots_up_to_a_step() -> None:
    model = torch.nn.Linear(2, 1)
    model.register_buffer("steps_seen", torch.tensor([0]))
    average = CheckpointAverage(count=2, keep=3)
    for step, value in [(3, 1.0), (6, 2.0), (9, 4.0), (12, 8.0)]:
        with torch.no_grad():
            model.weight.fill_(value)
            model.steps_seen.fill_(step)
        average.snapshot(model, step)
    assert [step for step, _ in average.snapshots] == [6, 9, 12]  # keeps 3
    state, steps = average.average(up_to_step=9)
    assert steps == [6, 9]
    assert torch.allclose(state["weight"], torch.full((1, 2), 3.0))
    assert state["steps_seen"].tolist() == [9]  # not a float: the last snapshot's
    assert average.average(None)[1] == [9, 12]
    assert average.average(up_to_step=6) is None  # one snapshot: nothing to average


def test_checkpoint_averaging_keeps_the_average_only_when_it_scores_as_well_on_eval() -> None:
    config = dataclasses.replace(TINY, max_steps=-1, epochs=4, checkpoint_average=3)
    model = train_classifier(TEXTS, LABELS, eval_texts=TEXTS, eval_labels=LABELS, config=config)
    record, metrics = model.metrics["checkpoint_average"], model.metrics
    assert record["steps"] and max(record["steps"]) <= metrics["best_step"]
    assert set(record["steps"]) <= {3, 6, 9, 12}  # epoch ends: 20 texts, batches of 8
    best = record["best_eval_macro_f1"]
    assert record["used"] == (record["eval_macro_f1"] >= best)
    kept = record["eval_macro_f1"] if record["used"] else best
    assert metrics["eval"]["macro_f1"] == pytest.approx(kept, abs=1e-4)


def test_without_an_eval_set_the_last_epochs_are_averaged() -> None:
    config = dataclasses.replace(
        TINY, max_steps=-1, epochs=3, eval_fraction=0.0, checkpoint_average=2
    )
    record = train_classifier(TEXTS, LABELS, config=config).metrics["checkpoint_average"]
    assert record["used"] and record["steps"] == [6, 9]


def test_augmentation_multiplies_the_training_texts_on_the_fine_tune_path_only() -> None:
    config = dataclasses.replace(TINY, max_steps=4, eval_fraction=0.0, augment_copies=2)
    model = train_classifier(TEXTS, LABELS, config=config)
    assert model.metrics["n_train"] == 3 * len(TEXTS)
    assert model.metrics["augmented_copies"] == 2 * len(TEXTS)
    small = train_classifier(
        TEXTS, LABELS, config=dataclasses.replace(config, strategy="auto")
    ).metrics
    assert small["strategy"] == "contrastive" and small["augmented_copies"] == 0
    assert any("augment_copies" in note and "--strategy fine-tune" in note
               for note in small["warnings"])  # fmt: skip
