"""The sequence ranker on the shipped data: windows, settings, save/load, the cold-item path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from threefold.apps.recs.events import Event
from threefold.apps.recs.sequence_model import SequenceConfig, SequenceModel
from threefold.apps.recs.sequence_training import (
    SequenceSettings,
    ordered_positions,
    train_sequence_model,
    training_windows,
)
from threefold.core.errors import ConfigError, ModelError

FAST = SequenceSettings(epochs=6, check_every=2, patience=2, max_seconds=60.0)


@pytest.fixture(scope="module")
def item_vectors(embedder, catalog_ids_and_texts):
    ids, texts = catalog_ids_and_texts
    return ids, embedder.encode(texts)


@pytest.fixture(scope="module")
def catalog_ids_and_texts():
    from threefold.apps.recs.catalog import load_catalog
    from threefold.apps.recs.config import DEFAULT_ITEMS

    items = list(load_catalog(DEFAULT_ITEMS))
    return [i.item_id for i in items], [i.text for i in items]


@pytest.fixture(scope="module")
def trained(item_vectors, sample_events):
    ids, vectors = item_vectors
    return train_sequence_model(ids, vectors, sample_events, settings=FAST)


def test_windows_predict_each_next_item_left_padded():
    inputs, targets = training_windows([[4, 5, 6]], length=4)
    assert inputs.tolist() == [[0, 0, 5, 6]]  # positions + 1, 0 = padding
    assert targets.tolist() == [[0, 0, 6, 7]]
    inputs, targets = training_windows([[0, 1, 2, 3, 4]], length=2)
    assert inputs.tolist() == [[3, 4], [1, 2]]
    assert targets.tolist() == [[4, 5], [2, 3]]


def test_ordered_positions_keep_first_interactions_in_time_order():
    events = [
        Event("a", "x", "view", 1),
        Event("a", "y", "view", 2),
        Event("a", "x", "purchase", 3),
    ]
    assert ordered_positions(events, {"x": 0, "y": 1}) == {"a": [0, 1]}


def test_settings_and_config_name_the_bad_value():
    with pytest.raises(ConfigError, match="epochs must be a positive integer, found 0"):
        SequenceSettings(epochs=0)
    with pytest.raises(ConfigError, match="sampled_negatives must be a positive integer"):
        SequenceSettings(sampled_negatives=0)
    with pytest.raises(ConfigError, match=r"hidden \(64\) must be divisible by heads \(3\)"):
        SequenceConfig(heads=3)
    with pytest.raises(ConfigError, match="needs use_text or use_ids"):
        SequenceConfig(use_text=False, use_ids=False)


def test_trained_model_learns_and_round_trips_with_identical_scores(
    trained, item_vectors, tmp_path
):
    ids, vectors = item_vectors
    assert trained.info["validation"]["users"] > 10
    histories = [[0, 1, 2], [5], []]
    scores = trained.scores(histories, vectors, ids)
    assert scores.shape == (3, len(ids))
    assert np.isfinite(scores).all()
    assert not scores[2].any()  # an empty history scores nothing
    trained.save(tmp_path / "sequence")
    loaded = SequenceModel.load(tmp_path / "sequence")
    assert np.array_equal(loaded.scores(histories, vectors, ids), scores)


def test_user_states_read_only_the_histories_items_without_a_table(trained, item_vectors):
    """What the ensemble's ID-only member does: its table holds only the items it scores."""
    ids, vectors = item_vectors
    histories = [[0, 1, 2], [5], [], [7, 3, 7]]
    full = trained.item_table(vectors, ids)
    read = trained.user_states(histories, vectors, ids, table=full)
    computed = trained.user_states(histories, vectors, ids)
    assert computed.shape == (4, trained.config.hidden)
    np.testing.assert_allclose(computed.numpy(), read.numpy(), rtol=1e-5, atol=1e-6)


def test_a_new_item_is_scored_through_its_text_alone(trained, item_vectors, embedder):
    ids, vectors = item_vectors
    new_text = "The Harrow Line Murders: a detective novel on a night train through the Highlands."
    new_vector = embedder.encode([new_text])
    all_ids, all_vectors = [*ids, "bk-new"], np.vstack([vectors, new_vector])
    assert trained.id_rows(["bk-new"]).tolist() == [0]
    history = [[ids.index("bk-002")]]
    with_new = trained.scores(history, all_vectors, all_ids)[0]
    assert np.isfinite(with_new[-1])
    # known items score the same whether or not the new one is in the catalog
    assert np.allclose(with_new[:-1], trained.scores(history, vectors, ids)[0], atol=1e-5)
    # the score depends on the text: a different text gives a different score
    other = embedder.encode(["A stainless steel saucepan with a glass lid."])
    changed = trained.scores(history, np.vstack([vectors, other]), all_ids)[0]
    assert changed[-1] != pytest.approx(with_new[-1])


def test_text_only_config_still_scores_unknown_items(item_vectors, sample_events):
    ids, vectors = item_vectors
    model = train_sequence_model(
        ids,
        vectors,
        sample_events,
        config=SequenceConfig(text_dimension=vectors.shape[1], use_ids=False),
        settings=SequenceSettings(epochs=2, check_every=2, patience=1, max_seconds=30.0),
    )
    scores = model.scores([[0, 1]], vectors, ids)
    assert np.isfinite(scores).all() and scores.std() > 0


def test_loading_a_folder_without_a_model_says_what_is_missing(tmp_path):
    with pytest.raises(ModelError, match=r"missing \['sequence.json', 'sequence.pt'\]"):
        SequenceModel.load(tmp_path)


def test_vectors_of_another_encoder_are_rejected(trained, item_vectors):
    ids, vectors = item_vectors
    with pytest.raises(ModelError, match="trained on 384"):
        trained.scores([[0]], vectors[:, :100], ids)


def test_refit_learns_the_held_out_newest_transitions(item_vectors, sample_events):
    """After early stopping on each user's last item, the refit epochs train on it too."""
    from threefold.apps.recs.sequence_training import refit_sequence_model

    ids, vectors = item_vectors
    settings = SequenceSettings(epochs=4, check_every=2, patience=2, max_seconds=60.0)
    model = train_sequence_model(ids, vectors, sample_events, settings=settings, refit=False)
    assert "refit" not in model.info
    position = {item_id: i for i, item_id in enumerate(ids)}
    sequences = {u: s for u, s in ordered_positions(sample_events, position).items() if len(s) > 1}
    inputs = [s[:-1] for s in sequences.values()]
    newest = np.array([s[-1] for s in sequences.values()])

    def mean_rank_of_newest() -> float:
        scores = model.scores(inputs, vectors, ids)
        return float(np.mean((scores > scores[np.arange(len(newest)), newest][:, None]).sum(1)))

    before = mean_rank_of_newest()
    refit = SequenceSettings(refit_epochs=6)
    refit_sequence_model(model, ids, vectors, sample_events, refit)
    assert model.info["refit"]["epochs"] == 6 and model.info["refit"]["windows"] > 0
    assert mean_rank_of_newest() < before  # the transitions it now trained on rank higher
    with pytest.raises(ConfigError, match="refit_epochs"):
        SequenceSettings(refit_epochs=-1)


def test_a_feature_builder_computes_the_item_table_once_and_an_edit_gets_a_new_one(
    trained, item_vectors, sample_events, embedder, monkeypatch
):
    from threefold.apps.recs.catalog import Item, load_catalog
    from threefold.apps.recs.config import DEFAULT_ITEMS
    from threefold.apps.recs.events import group_by_user
    from threefold.apps.recs.ranking_features import sequence_order
    from threefold.apps.recs.recommender import Recommender

    ids, vectors = item_vectors
    catalog = load_catalog(DEFAULT_ITEMS)
    tables = []
    real = trained.item_table
    monkeypatch.setattr(trained, "item_table", lambda *a: tables.append(a) or real(*a))
    engine = Recommender(catalog, embedder, sequence=trained, events=sample_events)
    engine.build({item_id: vector for item_id, vector in zip(ids, vectors, strict=True)})
    assert len(tables) == 1  # computed by the start
    histories = list(group_by_user(sample_events).items())[:4]
    builder = engine._builder
    profiles = [builder.profile(user, history) for user, history in histories]
    orders = [sequence_order(p.positions) for p in profiles]
    expected = trained.scores(orders, vectors, ids, table=real(vectors, ids))  # not counted
    first = builder.sequence_scores(trained, profiles)
    again = builder.sequence_scores(trained, profiles[1:2])
    assert len(tables) == 1  # once per builder, not per request
    np.testing.assert_allclose(first, expected, rtol=1e-5)
    np.testing.assert_allclose(again, first[1:2], rtol=1e-5)

    # an edited item is scored by its new text: the edit installs a builder with a new table
    target = ids.index("bk-003")
    old = catalog.get("bk-003")
    new_text = "A stainless steel saucepan with a glass lid and a copper base."
    engine.upsert_items([Item("bk-003", new_text, new_text, old.categories[0])])
    edited = engine._builder.sequence_scores(trained, profiles)
    assert engine._builder is not builder and len(tables) == 2
    assert not np.allclose(edited[:, target], first[:, target])


def test_validation_scores_users_in_blocks_with_the_same_result(monkeypatch):
    from threefold.apps.recs import sequence_training

    class Scores:  # pure logic: a score per (history, item) that depends on the history only
        def item_table(self, vectors, item_ids):
            return "table"

        def scores(self, histories, vectors, item_ids, *, table):
            assert table == "table"
            rows = [
                np.random.default_rng(sum(h) * 7 + len(h)).random(len(item_ids)) for h in histories
            ]
            return np.array(rows, dtype=np.float32)

    rng = np.random.default_rng(0)
    sequences = {
        f"u{i}": rng.choice(50, size=int(rng.integers(2, 9)), replace=False).tolist()
        for i in range(600)
    }
    validation = sequence_training.LastItemValidation(sequences, 50)
    whole = validation.measure(Scores(), np.zeros((50, 4)), [str(i) for i in range(50)], 10)
    monkeypatch.setattr(sequence_training, "VALIDATION_BLOCK_VALUES", 1)  # blocks of 256 users
    blocks = validation.measure(Scores(), np.zeros((50, 4)), [str(i) for i in range(50)], 10)
    assert blocks == whole and whole["hr@10"] > 0


def test_the_sampled_softmax_is_the_full_one_when_the_sample_holds_every_item(item_vectors):
    import torch

    from threefold.apps.recs import sequence_training
    from threefold.apps.recs.sequence_model import build_network

    ids, vectors = item_vectors
    torch.manual_seed(0)
    network = build_network(SequenceConfig(text_dimension=vectors.shape[1]), len(ids)).eval()
    text, rows = torch.as_tensor(vectors), torch.arange(1, len(ids) + 1)
    trained = list(range(0, len(ids), 2))  # the softmax: every other item
    columns, column_of = sequence_training._softmax_over(trained, len(ids))
    inputs, targets = training_windows([trained[:9], trained[3:12], trained[::-1]], 8)
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)

    def sampled(negatives: int) -> float:
        loss = sequence_training._sampled_softmax_loss
        return float(loss(network, x, y, text, rows, columns, negatives, np.random.default_rng(0)))

    with torch.no_grad():  # eval mode, no dropout: both losses read one network
        table = network.items(text, rows)
        logits = network.encode(x, table)[y > 0] @ table[columns].T
        full = float(torch.nn.functional.cross_entropy(logits, column_of[y[y > 0]]))
        # thousands of draws from a few dozen items: every one is in the sample
        assert sampled(200 * len(trained)) == pytest.approx(full, rel=1e-5)
        # a small sample is a different (easier) loss, from far fewer items
        assert sampled(2) < full


def test_a_large_catalog_trains_on_a_sampled_softmax_and_still_learns(item_vectors, sample_events):
    ids, vectors = item_vectors
    # from the first trained item: as if the catalog were huge
    settings = dataclasses.replace(FAST, sampled_softmax_from=1, sampled_negatives=8)
    model = train_sequence_model(ids, vectors, sample_events, settings=settings)
    assert model.info["settings"]["sampled_negatives"] == 8  # recorded with the model
    chance = 10 / len(ids)  # hr@10 of a random ranking
    assert model.info["validation"]["hr@10"] > 2 * chance


def test_training_leaves_the_callers_global_random_streams_as_they_were(
    item_vectors, sample_events
):
    """A background retrain in an API worker must not reseed the worker's global torch RNG."""
    import torch

    ids, vectors = item_vectors
    settings = dataclasses.replace(FAST, epochs=2)
    torch.manual_seed(2024)
    expected = torch.rand(5).tolist()
    torch.manual_seed(2024)
    train_sequence_model(ids, vectors, sample_events, settings=settings)
    assert torch.rand(5).tolist() == expected
