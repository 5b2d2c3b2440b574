"""Training the ranker: validation split, training pairs, settings, a real (tiny) fine-tune."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.apps.recs.events import Event
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.ranker_training import (
    RankerSettings,
    split_last,
    train_ranker,
    training_pairs,
)
from threefold.apps.recs.ranking_features import FEATURES
from threefold.core.errors import ConfigError


def test_split_last_hides_each_users_last_new_item():
    events = [
        Event("a", "i1", "view", 1),
        Event("a", "i2", "view", 2),
        Event("a", "i2", "purchase", 3),  # a repeat: not a new item
        Event("b", "i1", "view", 1),
    ]
    remaining, hidden = split_last(events)
    assert hidden == {"a": events[1]}
    assert remaining == [events[0], events[3]]


def test_training_pairs_pair_history_text_with_the_next_item(catalog):
    sequence = [catalog["kt-003"], catalog["kt-002"], catalog["kt-010"]]
    pairs = training_pairs([sequence], max_pairs=10, seed=1)
    assert len(pairs) == 2
    for history, target in pairs:
        assert "Espresso Machine Compact" in history
        assert target in {catalog["kt-002"].text, catalog["kt-010"].text}


def test_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="batch_size must be >= 2"):
        RankerSettings(batch_size=1)
    with pytest.raises(ConfigError, match="max_steps must be a positive integer"):
        RankerSettings(max_steps=0)
    with pytest.raises(ConfigError, match="sequence_processes must be an integer >= 1 or None"):
        RankerSettings(sequence_processes=0)


@pytest.mark.slow
def test_tiny_fine_tune_trains_saves_and_loads(catalog, sample_events, base_model_path, tmp_path):
    from threefold.apps.recs.sequence_ensemble import SequenceEnsemble
    from threefold.core.embedder import Embedder

    settings = RankerSettings(
        max_steps=2,
        batch_size=4,
        max_pairs=8,
        max_length=32,
        sequence_seconds=20.0,
        sequence_processes=2,
    )
    encoder = Embedder(base_model_path, max_length=32)  # own copy: never the shared one
    model = train_ranker(list(catalog), sample_events, settings=settings, encoder=encoder)
    assert model.info["fine_tune"]["steps"] == 2
    assert model.info["validation"]["users"] > 10
    assert set(model.combiner.weights) == set(FEATURES)
    model.save(tmp_path / "model")
    loaded = RankerModel.load(tmp_path / "model")
    texts = [catalog["kt-003"].text, catalog["bt-001"].text]
    assert np.allclose(loaded.encoder.encode(texts), model.encoder.encode(texts), atol=1e-5)
    assert loaded.combiner.weights == model.combiner.weights
    # the sequence ranker travels in the model folder and scores identically after loading
    assert isinstance(model.sequence, SequenceEnsemble)
    assert isinstance(loaded.sequence, SequenceEnsemble)
    assert model.info["sequence"]["validation"]["users"] > 10
    assert model.info["sequence"]["processes"] == 2  # the members trained in two processes
    vectors = model.encoder.encode([item.text for item in catalog])
    ids = [item.item_id for item in catalog]
    histories = [[0, 3, 5], [10]]
    assert np.array_equal(
        loaded.sequence.scores(histories, vectors, ids),
        model.sequence.scores(histories, vectors, ids),
    )


@pytest.mark.slow
def test_single_sequence_trains_the_text_aware_ranker_alone(catalog, sample_events, embedder):
    from threefold.apps.recs.sequence_model import SequenceModel

    settings = RankerSettings(fine_tune=False, sequence_ensemble=False, sequence_seconds=10.0)
    model = train_ranker(list(catalog), sample_events, settings=settings, encoder=embedder)
    assert isinstance(model.sequence, SequenceModel)
    assert model.sequence.config.use_text and model.sequence.config.use_ids


def test_a_combiner_too_large_for_memory_is_fitted_on_a_seeded_sample_of_users(
    catalog, sample_events, monkeypatch, caplog
):
    from threefold.apps.recs import ranker_training
    from threefold.core.encoder import HashingEncoder

    items, encoder = list(catalog), HashingEncoder()
    vectors = encoder.encode([item.text for item in items])
    _, everyone = ranker_training.tune_combiner(items, vectors, sample_events, encoder)
    monkeypatch.setattr(ranker_training, "COMBINER_TENSOR_BYTES", 1)  # as if n were huge
    _, sampled = ranker_training.tune_combiner(items, vectors, sample_events, encoder)
    assert sampled["users"] == ranker_training.MIN_VALIDATION_USERS < everyone["users"]
    assert f"fitting the combiner on 50 of {everyone['users']} validation users" in caplog.text
    users = [f"u{i}" for i in range(400)]
    first = ranker_training.validation_sample(users, 10**6, seed=13)
    assert first == ranker_training.validation_sample(users, 10**6, seed=13)  # seeded
    assert len(first) == 50 and set(first) < set(users) and first == sorted(first, key=users.index)
