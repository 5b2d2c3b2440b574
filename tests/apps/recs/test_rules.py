"""Business rules: exclusions, MMR, paging and cursors."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.apps.recs.candidates import pool_tiers, tiered_candidates
from threefold.apps.recs.rules import (
    allowed_items,
    decode_cursor,
    encode_cursor,
    mmr,
    paginate,
    rank_by_tier,
)
from threefold.core.errors import ConfigError


def test_allowed_items_excludes_purchases_always_and_seen_when_asked():
    active = np.array([True, True, True, True, False])
    category = np.array([True, True, True, False, True])
    mask = allowed_items(active, seen=[0, 1], purchased=[1], exclude_seen=False, category=category)
    assert mask.tolist() == [True, False, True, False, False]
    mask = allowed_items(active, seen=[0, 1], purchased=[1], exclude_seen=True)
    assert mask.tolist() == [False, False, True, True, False]


def test_mmr_trades_relevance_for_novelty():
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    candidates = np.array([0, 1, 2])
    relevance = np.array([1.0, 0.95, 0.5])
    assert mmr(candidates, relevance, vectors, k=2, diversity=0.0) == [0, 1]
    assert mmr(candidates, relevance, vectors, k=2, diversity=0.7) == [0, 2]
    with pytest.raises(ConfigError, match="diversity must be within"):
        mmr(candidates, relevance, vectors, k=2, diversity=1.5)


def test_full_diversity_starts_with_the_most_relevant_item_and_breaks_ties_by_relevance():
    """diversity=1 ignores relevance only after the first pick: the list still opens with the
    best item, and among equally novel items the more relevant one comes first."""
    vectors = np.eye(8, dtype=np.float32)  # no two items alike: every later pick ties
    candidates = np.array([5, 3, 7])
    relevance = np.array([0.1, 0.9, 0.5])
    assert mmr(candidates, relevance, vectors, k=3, diversity=1.0) == [3, 7, 5]


def test_paging_and_cursors():
    page = paginate(list(range(7)), offset=3, k=3)
    assert page.positions == [3, 4, 5]
    assert decode_cursor(page.next_cursor) == 6
    assert paginate(list(range(7)), offset=6, k=3).next_offset is None
    assert decode_cursor(encode_cursor(0)) == 0
    with pytest.raises(ConfigError, match="pass next_cursor as is"):
        decode_cursor("garbage!")


def test_the_best_new_item_takes_the_kth_place_and_the_rest_keep_their_order() -> None:
    from threefold.apps.recs.rules import new_item_slot

    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    new = np.array([False, False, False, False, True, True])
    preference = np.array([9.0, 9.0, 9.0, 9.0, 0.2, 0.9])  # known items' preference is ignored
    slotted = new_item_slot(scores, new, preference, 3)
    assert np.argsort(-slotted, kind="stable").tolist() == [0, 1, 5, 2, 3, 4]
    assert np.array_equal(np.delete(slotted, 5), np.delete(scores, 5))
    # a new item already in the first k: nothing moves
    assert np.array_equal(new_item_slot(scores, new, preference, 5), scores)
    # rows are users, each with its own best new item
    rows = new_item_slot(np.stack([scores, scores]), new, np.stack([preference, -preference]), 2)
    assert rows[0].argsort()[::-1][:2].tolist() == [0, 5] and rows[1][4] > rows[1][1]


def test_new_item_slot_never_promotes_an_excluded_item_and_needs_a_longer_list() -> None:
    from threefold.apps.recs.rules import new_item_slot

    scores = np.array([5.0, 4.0, 3.0, -np.inf])
    new = np.array([False, False, False, True])
    assert np.array_equal(new_item_slot(scores, new, np.ones(4), 2), scores)  # excluded (-inf)
    short = np.array([5.0, 4.0])
    assert np.array_equal(new_item_slot(short, np.array([False, True]), np.ones(2), 2), short)
    assert np.array_equal(new_item_slot(scores, new, np.ones(4), 0), scores)


def test_pool_tiers_double_up_to_the_wanted_size() -> None:
    assert pool_tiers(200, 20) == [200]
    assert pool_tiers(200, 201) == [200, 400]
    assert pool_tiers(8, 126) == [8, 16, 32, 64, 128]


def test_a_bigger_tier_ranks_after_a_smaller_one_whatever_its_scores() -> None:
    vectors = np.eye(4, dtype=np.float32)
    candidates = np.array([0, 1, 2, 3])
    scores = np.array([0.1, 0.2, 0.9, 0.8])  # the best items came with the bigger pool
    tiers = np.array([0, 0, 1, 1])
    assert rank_by_tier(candidates, scores, tiers, vectors, k=4, diversity=0.0) == [1, 0, 2, 3]
    assert rank_by_tier(candidates, scores, tiers, vectors, k=1, diversity=0.5) == [1]


def test_tiers_grow_while_short_of_candidates_and_stop_when_a_pool_brings_none() -> None:
    asked: list[int] = []

    def half_a_pool_of_five_items(pool: int) -> np.ndarray:
        asked.append(pool)
        return np.arange(min(pool // 2, 5))

    candidates, tiers = tiered_candidates(half_a_pool_of_five_items, [4], at_least=9, largest=64)
    assert candidates.tolist() == [0, 1, 2, 3, 4] and tiers.tolist() == [0, 0, 1, 1, 2]
    assert asked == [4, 8, 16, 32]  # 32 brought nothing new: no 64
