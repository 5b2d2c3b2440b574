"""Statistics counted in a forked child equal the ones counted here; a failing child falls back."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pytest

from threefold.apps.recs.candidates import DAY, InteractionStats, index_of
from threefold.apps.recs.ranking_features import FeatureBuilder
from threefold.apps.recs.statistics_process import count_statistics
from threefold.core.encoder import HashingEncoder


def assert_same(found: InteractionStats, expected: InteractionStats) -> None:
    n = len(expected)
    assert found.item_ids == expected.item_ids and found.position == expected.position
    assert (found.event_count, found.latest_timestamp) == (
        expected.event_count,
        expected.latest_timestamp,
    )
    np.testing.assert_array_equal(found.counts, expected.counts)
    np.testing.assert_array_equal(found.trending(), expected.trending())
    moments = np.array([expected.latest_timestamp - 3 * DAY, expected.latest_timestamp])
    np.testing.assert_array_equal(found.trending_at(moments), expected.trending_at(moments))
    for positions in ([0], [3, 7, 11], list(range(0, n, 5))):
        weights = np.linspace(1.0, 0.5, len(positions)).tolist()
        np.testing.assert_array_equal(
            found.cooccurrence(positions, weights), expected.cooccurrence(positions, weights)
        )
    for position in range(n):
        assert found.similar(position, 10) == expected.similar(position, 10)
    assert found.pair_similarity(0, 1) == expected.pair_similarity(0, 1)


@pytest.mark.parametrize("neighbours", [None, 3])
def test_a_child_counts_what_this_process_counts(catalog, sample_events, neighbours):
    ids = catalog.ids
    options = {"neighbours": neighbours, "trending_window": 14 * DAY}
    position = index_of(ids)
    found = count_statistics(ids, sample_events, position=position, **options)
    assert isinstance(found.counts, np.memmap)  # read from the child's files
    assert found.item_ids is ids and found.position is position  # not rebuilt here
    assert_same(found, InteractionStats(ids, sample_events, **options))


def test_a_large_catalog_s_table_is_read_sparse(catalog, sample_events):
    ids = [f"item-{i}" for i in range(5_000)]  # above DENSE_COOCCURRENCE_ITEMS
    spread = {item_id: f"item-{97 * i}" for i, item_id in enumerate(sorted(catalog.ids))}
    events = [dataclasses.replace(e, item_id=spread[e.item_id]) for e in sample_events]
    found = count_statistics(ids, events, neighbours=20, trending_window=14 * DAY)
    assert found._dense is None
    assert_same(found, InteractionStats(ids, events, neighbours=20, trending_window=14 * DAY))


def test_a_failing_child_leaves_the_count_to_this_process(
    catalog, sample_events, monkeypatch, caplog
):
    def fail(self, folder):  # runs in the child (fork copies the patch)
        raise OSError("disk full")

    monkeypatch.setattr(InteractionStats, "save_arrays", fail)
    with caplog.at_level(logging.WARNING):
        found = count_statistics(
            catalog.ids, sample_events, neighbours=None, trending_window=14 * DAY
        )
    assert "failed (exit status 1); counting here" in caplog.text
    assert not isinstance(found.counts, np.memmap)
    assert_same(found, InteractionStats(catalog.ids, sample_events, neighbours=None))


def test_without_fork_the_count_runs_here(catalog, sample_events, monkeypatch):
    monkeypatch.delattr(os, "fork")
    found = count_statistics(catalog.ids, sample_events, neighbours=None, trending_window=DAY)
    assert not isinstance(found.counts, np.memmap)
    assert_same(
        found, InteractionStats(catalog.ids, sample_events, neighbours=None, trending_window=DAY)
    )


def test_new_statistics_keep_the_builder_s_item_side_tables(catalog, sample_events):
    items, encoder = list(catalog), HashingEncoder(64)
    vectors = encoder.encode([item.text for item in items])
    builder = FeatureBuilder(items, vectors, InteractionStats(catalog.ids, sample_events[:50]))
    more = count_statistics(
        builder.item_ids,
        sample_events,
        position=builder.position,
        neighbours=200,
        trending_window=14 * DAY,
    )
    derived = builder.with_stats(more)
    assert derived.by_id is builder.by_id and derived.category_matrix is builder.category_matrix
    fresh = FeatureBuilder(items, vectors, InteractionStats(catalog.ids, sample_events))
    profile = fresh.profile("u001", [e for e in sample_events if e.user_id == "u001"])
    query = encoder.encode([profile.text])[0]
    everything = np.arange(len(items))
    trending = fresh.remap(fresh.stats.trending())
    np.testing.assert_array_equal(
        derived.features(profile, query, everything, trending),
        fresh.features(profile, query, everything, trending),
    )
    swapped = builder.with_stats(more, vectors * 0.5)  # a ranker swap: new vectors
    assert swapped.by_id is builder.by_id and swapped._sequence_table is None
    np.testing.assert_array_equal(swapped.vectors, vectors * 0.5)
    other = InteractionStats(list(catalog.ids), sample_events)  # another id list: made anew
    assert builder.with_stats(other).by_id is not builder.by_id


@pytest.mark.parametrize("broken", ["fork", "mkdtemp"])
def test_no_fork_or_no_temporary_folder_leaves_the_count_to_this_process(
    catalog, sample_events, monkeypatch, caplog, broken
):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os if broken == "fork" else tempfile, broken, refuse)
    with caplog.at_level(logging.WARNING):
        found = count_statistics(catalog.ids, sample_events, neighbours=None, trending_window=DAY)
    assert "Cannot allocate memory" in caplog.text and "counting here" in caplog.text
    assert_same(
        found, InteractionStats(catalog.ids, sample_events, neighbours=None, trending_window=DAY)
    )
