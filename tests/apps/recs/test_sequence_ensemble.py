"""The sequence ensemble (text-aware ranker + ID-only SASRec) on the shipped data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from threefold.apps.recs.sequence_ensemble import (
    ENSEMBLE_FILE,
    SequenceEnsemble,
    load_sequence_ranker,
)
from threefold.apps.recs.sequence_model import SequenceModel
from threefold.apps.recs.sequence_training import SequenceSettings, train_sequence_ensemble
from threefold.core.errors import ConfigError, ModelError

FAST = SequenceSettings(epochs=4, check_every=2, patience=2, max_seconds=60.0, refit_epochs=1)


@pytest.fixture(scope="module")
def item_vectors(embedder):
    from threefold.apps.recs.catalog import load_catalog
    from threefold.apps.recs.config import DEFAULT_ITEMS

    items = list(load_catalog(DEFAULT_ITEMS))
    return [i.item_id for i in items], embedder.encode([i.text for i in items])


@pytest.fixture(scope="module")
def ensemble(item_vectors, sample_events) -> SequenceEnsemble:
    ids, vectors = item_vectors
    return train_sequence_ensemble(ids, vectors, sample_events, settings=FAST)


def log_probabilities(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64: the reference the ensemble's float32 scores match."""
    scores = scores.astype(np.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_members_are_text_aware_and_id_only_and_the_ensemble_is_measured(ensemble):
    text, ids_only = ensemble.members
    assert (text.config.use_text, text.config.use_ids) == (True, True)
    assert (ids_only.config.use_text, ids_only.config.use_ids) == (False, True)
    assert ensemble.info["validation"]["users"] > 10
    assert 0.0 <= ensemble.info["validation"]["ndcg@10"] <= 1.0
    assert [m["use_text"] for m in ensemble.info["members"]] == [True, False]
    assert [r["epochs"] for r in ensemble.info["refit"]] == [1, 1]


def test_scores_average_the_members_log_probabilities(ensemble, item_vectors):
    ids, vectors = item_vectors
    histories = [[0, 1, 2], [5], []]
    scores = ensemble.scores(histories, vectors, ids)
    assert scores.shape == (3, len(ids)) and np.isfinite(scores).all()
    assert not scores[2].any()  # an empty history scores nothing
    text, ids_only = ensemble.members
    known = ids_only.represents(ids)
    expected = log_probabilities(text.scores(histories[:2], vectors, ids).astype(np.float64))
    expected[:, known] += log_probabilities(
        ids_only.scores(histories[:2], vectors, ids)[:, known].astype(np.float64)
    )
    expected[:, known] /= 2
    np.testing.assert_allclose(scores[:2], expected, rtol=1e-5, atol=1e-5)


def test_a_new_item_is_scored_by_the_text_member_alone(ensemble, item_vectors, embedder):
    ids, vectors = item_vectors
    new_vector = embedder.encode(["A detective novel set on a night train through the Highlands."])
    all_ids, all_vectors = [*ids, "bk-new"], np.vstack([vectors, new_vector])
    text, ids_only = ensemble.members
    assert ids_only.represents(all_ids).tolist() == [*ids_only.represents(ids).tolist(), False]
    history = [[ids.index("bk-002")]]
    scores = ensemble.scores(history, all_vectors, all_ids)[0]
    assert np.isfinite(scores[-1])
    text_only = log_probabilities(text.scores(history, all_vectors, all_ids).astype(np.float64))
    assert scores[-1] == pytest.approx(text_only[0, -1], abs=1e-5)


def test_round_trip_gives_identical_scores_and_the_loader_tells_folders_apart(
    ensemble, item_vectors, tmp_path
):
    ids, vectors = item_vectors
    histories = [[0, 1, 2], [7, 3]]
    ensemble.save(tmp_path / "ensemble")
    assert json.loads((tmp_path / "ensemble" / ENSEMBLE_FILE).read_text())["members"] == [
        "member-0",
        "member-1",
    ]
    loaded = load_sequence_ranker(tmp_path / "ensemble")
    assert isinstance(loaded, SequenceEnsemble)
    assert np.array_equal(
        loaded.scores(histories, vectors, ids), ensemble.scores(histories, vectors, ids)
    )
    assert loaded.info["validation"] == ensemble.info["validation"]
    ensemble.members[0].save(tmp_path / "single")
    assert isinstance(load_sequence_ranker(tmp_path / "single"), SequenceModel)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ENSEMBLE_FILE).write_text('{"format": "something-else"}')
    with pytest.raises(ModelError, match="is not a sequence ensemble"):
        load_sequence_ranker(tmp_path / "bad")
    with pytest.raises(ModelError, match="at least one member"):
        SequenceEnsemble([])


def test_members_trained_in_two_processes_equal_members_trained_here(item_vectors, sample_events):
    import torch

    ids, vectors = item_vectors
    threads = torch.get_num_threads()
    try:
        here, apart = (
            train_sequence_ensemble(
                ids,
                vectors,
                sample_events,
                settings=dataclasses.replace(FAST, threads=1, processes=processes),
            )
            for processes in (1, 2)
        )
    finally:
        torch.set_num_threads(threads)
    assert (here.info["processes"], apart.info["processes"]) == (1, 2)
    histories = [[0, 1, 2], [7, 3], [11]]
    assert np.array_equal(
        here.scores(histories, vectors, ids), apart.scores(histories, vectors, ids)
    )
    assert here.info["validation"] == apart.info["validation"]


def test_processes_must_be_a_positive_integer_or_none():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ConfigError, match="processes must be an integer >= 1 or None"):
            SequenceSettings(processes=bad)


def test_members_over_different_items_average_where_they_overlap_and_fill_the_rest():
    """Two ID-only members: one knows a, b, c; the other b, c, d; nobody knows e."""
    from threefold.apps.recs.sequence_model import SequenceConfig

    ids = ["a", "b", "c", "d", "e"]
    vectors = np.zeros((5, 4), dtype=np.float32)
    config = SequenceConfig(text_dimension=4, use_text=False)
    first, second = SequenceModel(config, ["a", "b", "c"]), SequenceModel(config, ["b", "c", "d"])
    histories = [[0, 1], [3], []]
    scores = SequenceEnsemble([first, second]).scores(histories, vectors, ids)
    one = log_probabilities(first.scores(histories, vectors, ids)[:2, :3])
    two = log_probabilities(second.scores(histories, vectors, ids)[:2, 1:4])
    np.testing.assert_allclose(scores[:2, 0], one[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[:2, 1:3], (one[:, 1:] + two[:, :2]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[:2, 3], two[:, 2], rtol=1e-5, atol=1e-6)
    assert (scores[:2, 4] == scores[:2, :4].min(axis=1)).all()  # e: the row's lowest
    assert not scores[2].any()
