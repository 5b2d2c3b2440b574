"""The evaluation contract: metrics, and `threefold recs eval` output on the shipped data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from threefold.apps.recs.cli import recs
from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS
from threefold.apps.recs.evaluation import first_interactions
from threefold.apps.recs.events import Event
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize
from threefold.core.errors import ModelError


def test_rank_ignores_seen_items_and_counts_ties_half():
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.8, 0.4, 0.3]])
    seen = np.array([[True, False, False, False], [False, False, False, False]])
    ranks = rank_of_targets(scores, seen, np.array([1, 3]))
    assert ranks.tolist() == [1.5, 3.0]  # row 0: item 0 is seen, tie with item 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_score_is_an_error_not_rank_one(bad):
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.4]])
    scores[1, 2] = bad
    seen = np.zeros_like(scores, dtype=bool)
    with pytest.raises(ModelError, match=r"non-finite scores .* 1 of 2 users .*expected a finite"):
        rank_of_targets(scores, seen, np.array([0, 2]))


def test_a_non_finite_score_on_a_seen_item_is_ignored():
    scores = np.array([[np.nan, 0.5, 0.1]])
    ranks = rank_of_targets(scores, np.array([[True, False, False]]), np.array([1]))
    assert ranks.tolist() == [1.0]


def test_summary_metrics_for_known_ranks():
    result = summarize(np.array([1.0, 2.0, 20.0]), k=10)
    assert result["hr@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 3, abs=1e-4)
    assert result["mrr"] == pytest.approx((1 + 0.5 + 0.05) / 3, abs=1e-4)


def test_repeat_interactions_collapse_to_the_first():
    events = [
        Event("a", "x", "view", 1),
        Event("a", "x", "purchase", 2),
        Event("a", "y", "view", 3),
    ]
    assert first_interactions(events) == [events[0], events[2]]


@pytest.mark.slow
def test_eval_prints_one_json_object_with_model_and_baselines():
    # fmt: off
    args = [
        "eval", "--items", str(DEFAULT_ITEMS), "--interactions", str(DEFAULT_EVENTS),
        "--k", "10", "--max-steps", "2", "--batch-size", "4", "--max-pairs", "8",
    ]
    # fmt: on
    result = CliRunner().invoke(recs, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["users"] == 80
    metric_names = {"hr@10", "ndcg@10", "mrr"}
    assert set(report["model"]) == metric_names | {"train_seconds"}
    assert set(report["baselines"]) == {"popularity", "item_knn", "text_similarity"}
    for metrics in (report["model"], *report["baselines"].values()):
        assert metric_names <= set(metrics)
        assert all(0.0 <= metrics[name] <= 1.0 for name in metric_names)
    # item-kNN beats popularity on a log with strong "bought together" pairs
    assert report["baselines"]["item_knn"]["ndcg@10"] > report["baselines"]["popularity"]["ndcg@10"]


def test_eval_names_the_bad_line_of_the_interactions_file(tmp_path):
    bad = tmp_path / "events.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,kt-001,10\nu1,no-such-item,11\n")
    result = CliRunner().invoke(
        recs, ["eval", "--items", str(DEFAULT_ITEMS), "--interactions", str(bad)]
    )
    assert result.exit_code != 0
    assert "line 3" in result.output
    assert "no-such-item" in result.output


def test_scoring_users_in_blocks_gives_the_one_block_figures(catalog, sample_events, monkeypatch):
    from threefold.apps.recs import evaluation
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.ranker_store import RankerModel
    from threefold.core.encoder import HashingEncoder

    model = RankerModel(encoder=HashingEncoder(), combiner=LinearCombiner(), info={})
    split = evaluation.leave_last_out(catalog, sample_events)
    assert evaluation.evaluation_blocks(split) == [slice(0, len(split.users))]
    whole = evaluation.score_model(model, split)
    # as if the catalog were large: blocks of 3 users (one user's features are a block's 1/3)
    per_user = len(split.items) * len(evaluation.FEATURES)
    monkeypatch.setattr(evaluation, "EVALUATION_BLOCK_VALUES", 3 * per_user)
    blocks = evaluation.evaluation_blocks(split)
    assert len(blocks) == -(-len(split.users) // 3) and blocks[-1].stop == len(split.users)
    assert evaluation.score_model(model, split) == whole
    assert whole["hr@10"] > 0
