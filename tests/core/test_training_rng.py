"""Training leaves the caller's global RNGs (random, NumPy, torch) as it found them, and the
same seed still trains the same model."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from support.classifier_data import LABELS, TEXTS, TINY

from threefold.core.classifier_training import train_classifier
from threefold.core.embedder import Embedder
from threefold.core.multitask import train_multitask
from threefold.core.small_data import train_contrastive
from threefold.core.training_rng import global_rngs_restored

CALLER_SEED = 2024
TOPICS = ["results"] * 10 + ["other"] * 10
CONTRASTIVE = dataclasses.replace(TINY, strategy="contrastive", max_steps=4)
PAIRS = [(text, text.upper()) for text in TEXTS[:8]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple[list[float], list[float], list[float]]:
    """Five numbers from each global generator (what a serving thread would get next)."""
    return (
        [random.random() for _ in range(5)],
        np.random.rand(5).tolist(),
        torch.rand(5).tolist(),
    )


def fine_tune(_base_model_path: str) -> Callable[[], Any]:
    return lambda: train_classifier(TEXTS, LABELS, config=dataclasses.replace(TINY, max_steps=4))


def contrastive(_base_model_path: str) -> Callable[[], Any]:
    return lambda: train_classifier(TEXTS, LABELS, config=CONTRASTIVE)


def small_data_path(base_model_path: str) -> Callable[[], Any]:
    names = sorted(set(LABELS))
    return lambda: train_contrastive(TEXTS, LABELS, names, base_model_path, CONTRASTIVE, "cpu")[0]


def multitask(_base_model_path: str) -> Callable[[], Any]:
    config = dataclasses.replace(TINY, max_steps=4, eval_fraction=0.25)
    return lambda: train_multitask(TEXTS, {"topic": TOPICS, "sentiment": LABELS}, config=config)


def embedder(base_model_path: str) -> Callable[[], Any]:
    # loaded here, before the caller's draws: loading is not training (and draws from `random`)
    model = Embedder(base_model_path, device="cpu").load()
    return lambda: model.fine_tune(PAIRS, batch_size=4, max_steps=2, show_progress=False, seed=5)


# name -> prepare(base model path) -> train(): the training a background retrain would run
TRAININGS: dict[str, Callable[[str], Callable[[], Any]]] = {
    "train_classifier (fine-tune)": fine_tune,
    "train_classifier (contrastive)": contrastive,
    "train_contrastive": small_data_path,
    "train_multitask": multitask,
    "Embedder.fine_tune": embedder,
}


def test_global_rngs_restored_rewinds_every_generator_the_block_reseeded() -> None:
    seed_everything(CALLER_SEED)
    expected = draws()
    seed_everything(CALLER_SEED)
    with global_rngs_restored():
        seed_everything(7)
        draws()
    assert draws() == expected


def test_global_rngs_restored_restores_them_when_the_block_raises() -> None:
    seed_everything(CALLER_SEED)
    expected = draws()
    seed_everything(CALLER_SEED)
    with pytest.raises(RuntimeError, match="training failed"), global_rngs_restored():
        seed_everything(7)
        raise RuntimeError("training failed")
    assert draws() == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAININGS))
def test_a_background_training_leaves_the_callers_random_streams_as_they_were(
    name: str, base_model_path: str
) -> None:
    """A retrain in a background thread of an API worker must not reseed the worker's RNGs."""
    train = TRAININGS[name](base_model_path)
    seed_everything(CALLER_SEED)
    draws()
    expected = draws()  # the stream without any training in between

    seed_everything(CALLER_SEED)
    draws()
    errors: list[BaseException] = []

    def retrain() -> None:
        try:
            train()
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    thread = threading.Thread(target=retrain)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    assert draws() == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train_classifier (fine-tune)", "train_multitask"])
def test_the_same_seed_still_trains_the_same_model_whatever_the_caller_drew_before(
    name: str, base_model_path: str
) -> None:
    train = TRAININGS[name](base_model_path)
    seed_everything(1)
    first = train()
    seed_everything(99)  # another caller state: training seeds itself
    np.random.rand(3)
    second = train()
    np.testing.assert_array_equal(
        _probabilities(first), _probabilities(second), err_msg="same seed, other probabilities"
    )


def _probabilities(model: Any) -> np.ndarray:
    probabilities = model.predict_proba(TEXTS)
    if isinstance(probabilities, dict):  # a multi-task model: one array per task
        return np.concatenate([probabilities[task] for task in sorted(probabilities)], axis=1)
    return np.asarray(probabilities)
