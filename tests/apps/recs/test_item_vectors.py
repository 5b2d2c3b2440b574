"""Catalog vectors are reused only for the text they embed: in the model folder and in Redis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from threefold.apps.recs.catalog import Catalog, Item
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.item_vectors import KEYS_FILE, VECTORS_FILE, ItemVectors
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import VECTOR_BATCH, RedisState
from threefold.apps.recs.resources import load_ranker, open_redis
from threefold.core.errors import ModelError
from threefold.streaming.connections import RedisSettings


def edited(item: Item) -> Item:
    return dataclasses.replace(item, description=item.description + " Now in a larger size.")


def items_and_vectors(count: int, dimension: int = 8) -> tuple[list[Item], np.ndarray]:
    items = [Item(f"item-{i}", f"Item {i}", f"description {i}", "Books") for i in range(count)]
    vectors = np.random.default_rng(0).standard_normal((count, dimension)).astype(np.float32)
    return items, vectors


def test_saved_vectors_load_memory_mapped_and_match_only_unchanged_texts(tmp_path: Path):
    items, matrix = items_and_vectors(5)
    ItemVectors.of("weights-a", items, matrix).save(tmp_path)
    loaded = ItemVectors.load(tmp_path)
    assert loaded is not None and isinstance(loaded.matrix, np.memmap)
    now = [items[0], edited(items[1]), *items[2:4]]  # items[4] left the catalog
    found = loaded.matching("weights-a", now)
    assert sorted(found) == ["item-0", "item-2", "item-3"]
    np.testing.assert_array_equal(found["item-2"], matrix[2])
    # vectors of another encoder (a retrained model, another max length) are never reused
    assert loaded.matching("weights-b", now) == {}
    assert ItemVectors.load(tmp_path / "elsewhere") is None


def test_saved_vectors_out_of_step_with_their_keys_are_refused(tmp_path: Path):
    items, matrix = items_and_vectors(3)
    ItemVectors.of("weights-a", items, matrix).save(tmp_path)
    np.save(tmp_path / VECTORS_FILE, matrix[:2])
    with pytest.raises(ModelError, match=f"{KEYS_FILE} names 3 items.*delete both files"):
        ItemVectors.load(tmp_path)
    with pytest.raises(ModelError, match="3 items but 2 vectors"):
        ItemVectors.of("weights-a", items, matrix[:2])


@pytest.mark.integration
def test_redis_vectors_round_trip_in_batches_and_skip_an_edited_text(redis_url, redis_prefix):
    state = RedisState(
        RedisSettings(url=redis_url), prefix=redis_prefix, metrics=RecsMetrics(CollectorRegistry())
    )
    items, vectors = items_and_vectors(2 * VECTOR_BATCH + 7, dimension=384)
    by_id = {item.item_id: vector for item, vector in zip(items, vectors, strict=True)}
    assert state.put_vectors("model", items, by_id)
    unknown = Item("unknown", "Unknown", "", "Books")
    found = state.get_vectors("model", [*items, unknown])
    assert len(found) == len(items) and "unknown" not in found
    np.testing.assert_array_equal(np.stack([found[i.item_id] for i in items]), vectors)
    # the merchandiser rewrote item 5 in the items file: its stored vector is stale
    now = [*items[:5], edited(items[5]), *items[6:]]
    assert sorted(set(state.get_vectors("model", now)) ^ set(found)) == ["item-5"]
    assert state.available


@pytest.mark.integration
def test_the_api_serves_a_build_s_vectors_and_embeds_only_the_edited_item(
    tmp_path: Path, embedder, catalog: Catalog
):
    items = list(catalog)
    matrix = embedder.encode([item.text for item in items])
    model = RankerModel(
        encoder=embedder,
        combiner=LinearCombiner(),
        info={"trending_window_days": 14},
        item_vectors=ItemVectors.of(embedder.weights_id, items, matrix),
    )
    model.save(tmp_path / "model")
    changed = edited(items[3])
    catalog.add(changed)  # the items file changed between the build and the start
    redis = open_redis(RecsConfig(), RedisSettings(url=None), RecsMetrics(CollectorRegistry()))
    ranker = load_ranker(tmp_path / "model", "v1", catalog, redis)
    assert len(ranker.vectors) == len(items) - 1 and changed.item_id not in ranker.vectors
    recommender = Recommender.for_ranker(catalog, ranker, [])
    computed = recommender.build(ranker.vectors)
    assert list(computed) == [changed.item_id]  # one item embedded, not the catalog
    np.testing.assert_allclose(
        recommender.vector_of(changed.item_id), embedder.encode([changed.text])[0], atol=1e-5
    )


@pytest.mark.integration
def test_preparing_deletes_the_bare_vector_hashes_of_earlier_versions(
    redis_url, redis_prefix, redis_client, embedder
):
    from threefold.apps.recs.resources import prepare_recs

    legacy = [f"{redis_prefix}vectors:model-{i}" for i in range(3)]
    for key in legacy:
        redis_client.hset(key, mapping={"item-1": b"\x00" * 16})
    other = f"{redis_prefix}item-vectors:kept"
    redis_client.hset(other, mapping={"item-1": b"\x00" * 32})
    settings = RecsConfig(redis_prefix=redis_prefix, tune_on_start=False)
    prepare_recs(settings, RedisSettings(url=redis_url), encoder=embedder)
    assert not any(redis_client.exists(key) for key in legacy)
    assert redis_client.exists(other)
