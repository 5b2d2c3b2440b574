"""Interaction statistics and candidate generation."""

from __future__ import annotations

import numpy as np

from threefold.apps.recs import candidates
from threefold.apps.recs.candidates import (
    DAY,
    InteractionStats,
    descending,
    first_allowed,
    generate_candidates,
    top_positions,
)
from threefold.apps.recs.events import Event

ITEMS = ["a", "b", "c", "d"]


def log() -> list[Event]:
    # a and b always together; c popular long ago; d recent
    return [
        Event("u1", "a", "view", 0),
        Event("u1", "b", "view", 1),
        Event("u2", "a", "view", 2),
        Event("u2", "b", "view", 3),
        Event("u3", "c", "view", 4),
        Event("u4", "c", "view", 5),
        Event("u5", "c", "view", 6),
        Event("u6", "d", "view", 40 * DAY),
    ]


def test_cooccurrence_links_items_bought_together():
    for neighbours in (None, 2):
        stats = InteractionStats(ITEMS, log(), neighbours=neighbours)
        scores = stats.cooccurrence([0], [1.0])
        assert scores[1] == np.float32(1.0)  # cosine of a and b
        assert scores[2] == scores[3] == 0
        assert stats.pair_similarity(0, 1) == 1.0
        assert stats.similar(1, 3) == [(0, 1.0)]


def test_popularity_and_trending_window():
    stats = InteractionStats(ITEMS, log(), trending_window=14 * DAY)
    popularity = stats.popularity()
    assert popularity.argmax() == 2
    assert popularity[2] == 1.0
    trending = stats.trending()  # as of the newest event: only d is recent
    assert trending.tolist() == [0.0, 0.0, 0.0, 1.0]
    early = stats.trending_at(np.array([10.0]))[0]
    assert early[2] == 1.0 and early[3] == 0.0


def test_cold_candidates_come_from_popularity_and_trending():
    stats = InteractionStats(ITEMS, log())
    allowed = np.array([True, True, True, False])
    chosen = generate_candidates(
        allowed=allowed, pool=4, popularity=stats.popularity(), trending=stats.trending()
    )
    assert 3 not in chosen.tolist()
    assert chosen[0] in {0, 1, 2}
    assert set(chosen.tolist()) <= {0, 1, 2}


def test_precomputed_orders_pick_the_same_candidates_as_a_full_pass():
    rng = np.random.default_rng(5)
    n = 5000
    popularity = rng.random(n).astype(np.float32) ** 4
    trending = rng.random(n).astype(np.float32)  # no ties: tied items may come in any order
    cooccurrence = np.where(rng.random(n) < 0.02, rng.random(n), 0).astype(np.float32)
    for allowed_share in (0.999, 0.5, 0.002):
        allowed = rng.random(n) < allowed_share
        common = dict(allowed=allowed, pool=200, neighbour_positions=[3, 7, 11])
        full = generate_candidates(
            popularity=popularity, trending=trending, cooccurrence=cooccurrence, **common
        )
        ordered = generate_candidates(
            popularity=popularity,
            trending=trending,
            cooccurrence=cooccurrence,
            popularity_order=descending(popularity),
            trending_order=descending(trending),
            **common,
        )
        assert set(ordered.tolist()) == set(full.tolist())
        assert allowed[ordered].all()


def test_first_allowed_walks_the_order_until_enough_are_allowed():
    order = np.arange(1000)[::-1]
    allowed = np.zeros(1000, dtype=bool)
    allowed[[5, 10, 998]] = True
    assert first_allowed(order, 2, allowed).tolist() == [998, 10]
    assert first_allowed(order, 5, allowed).tolist() == [998, 10, 5]


def test_cooccurrence_in_item_blocks_equals_one_product(monkeypatch) -> None:
    from threefold.apps.recs import candidates

    rng = np.random.default_rng(0)
    n = 600
    users = [
        set(rng.choice(n, size=rng.integers(1, 25), replace=False).tolist()) for _ in range(400)
    ]
    counts = np.zeros(n, dtype=np.float32)
    for positions in users:
        counts[list(positions)] += 1
    rows = np.repeat(np.arange(len(users)), [len(positions) for positions in users])
    columns = np.array([p for positions in users for p in positions])
    whole = candidates._cooccurrence_table(rows, columns, len(users), counts, n, 40)
    monkeypatch.setattr(candidates, "COOCCURRENCE_BLOCK", 7)  # 86 blocks, the last one short
    blocked = candidates._cooccurrence_table(rows, columns, len(users), counts, n, 40)
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_array_equal(blocked.indptr, whole.indptr)
    np.testing.assert_allclose(blocked.data, whole.data)


def test_the_sequence_rankers_best_allowed_items_are_candidates():
    stats = InteractionStats(ITEMS, log())
    sequence = np.array([0.0, 0.1, 0.2, 5.0], dtype=np.float32)  # d: the likeliest next item
    common = dict(pool=4, popularity=stats.popularity(), trending=np.zeros(4, dtype=np.float32))
    allowed = np.array([True, True, True, True])
    assert 3 in generate_candidates(allowed=allowed, sequence=sequence, **common).tolist()
    allowed[3] = False
    assert 3 not in generate_candidates(allowed=allowed, sequence=sequence, **common).tolist()


def random_log(n_items: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [
        Event(f"u{u}", f"i{int(i)}", "view", float(t))
        for u in range(300)
        for t, i in enumerate(rng.choice(n_items, size=int(rng.integers(1, 12)), replace=False))
    ]


def test_the_sparse_table_of_a_large_catalog_answers_like_the_dense_one(monkeypatch):
    import threefold.apps.recs.candidates as candidates

    items = [f"i{i}" for i in range(150)]
    events = random_log(len(items), seed=3)
    for neighbours in (None, 3):
        dense = InteractionStats(items, events, neighbours=neighbours)
        monkeypatch.setattr(candidates, "DENSE_COOCCURRENCE_ITEMS", 10)
        large = InteractionStats(items, events, neighbours=neighbours)
        monkeypatch.undo()
        assert dense._dense is not None and large._dense is None
        for positions in ([0], [5, 9, 9, 140], list(range(0, 150, 7))):
            weights = np.linspace(1.0, 0.2, len(positions))
            np.testing.assert_allclose(
                large.cooccurrence(positions, weights),
                dense.cooccurrence(positions, weights),
                rtol=1e-5,
                atol=1e-7,
            )
        pairs = [(a, b) for a in range(0, 150, 11) for b in range(150)]
        assert [large.pair_similarity(a, b) for a, b in pairs] == [
            dense.pair_similarity(a, b) for a, b in pairs
        ]
        for position in range(0, 150, 13):
            assert large.similar(position, 5) == dense.similar(position, 5)
        if neighbours is not None:  # at most `neighbours` kept per item, the strongest ones
            assert max(len(large.similar(p, 150)) for p in range(150)) <= neighbours


def test_keeping_all_neighbours_of_a_large_catalog_costs_its_pairs_not_its_square():
    # 200,000 items: a dense n x n table would be 160 GB; the pairs seen together are a few
    items = [f"i{i}" for i in range(200_000)]
    stats = InteractionStats(items, random_log(len(items), seed=4), neighbours=None)
    assert stats._dense is None and stats._similarity.nnz < 40_000
    first = stats.position[random_log(len(items), seed=4)[0].item_id]
    assert stats.similar(first, 3) and stats.cooccurrence([first], [1.0]).shape == (200_000,)


def test_a_large_catalogs_top_scores_come_from_torch_topk_unchanged(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal(5_000).astype(np.float32)
    allowed = rng.random(5_000) > 0.3
    expected = top_positions(scores, 40, allowed)  # argpartition below TORCH_TOP_FROM
    monkeypatch.setattr(candidates, "TORCH_TOP_FROM", 1_000)
    assert top_positions(scores, 40, allowed).tolist() == expected.tolist()
    assert allowed[expected].all() and len(expected) == 40
    few = np.zeros(5_000, dtype=bool)
    few[[7, 9]] = True  # fewer allowed than asked: only those
    assert sorted(top_positions(scores, 40, few).tolist()) == [7, 9]


def test_statistics_read_in_slices_equal_one_pass(monkeypatch) -> None:
    """The rebuild reads the catalog and the log a slice at a time (`sliced`), to let request
    threads take the interpreter lock between slices; the result must not depend on it."""
    rng = np.random.default_rng(4)
    items = [f"i{k}" for k in range(300)]
    events = [
        Event(f"u{rng.integers(0, 40)}", f"i{rng.integers(0, 320)}", "view", float(k))
        for k in range(2_000)
    ]  # some items unknown, many repeats
    whole = InteractionStats(items, events, neighbours=20)
    monkeypatch.setattr(candidates, "GIL_SLICE", 7)
    assert [start for start, _ in candidates.sliced(list(range(20)))] == [0, 7, 14]
    sliced = InteractionStats(items, events, neighbours=20)
    assert sliced.position == whole.position
    assert np.array_equal(sliced.counts, whole.counts) and sliced.event_count == whole.event_count
    assert np.array_equal(sliced._positions, whole._positions)
    assert (sliced._similarity != whole._similarity).nnz == 0
    assert candidates.lookup({"a": 3}, ["b", "a"]).tolist() == [-1, 3]
    assert candidates.lookup({}, []).tolist() == []
