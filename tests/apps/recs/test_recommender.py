"""The recommendation facade: cold start, exclusions, filters, diversity, live catalog edits."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from threefold.apps.recs.catalog import Item, load_catalog
from threefold.apps.recs.config import DEFAULT_ITEMS
from threefold.apps.recs.events import Event
from threefold.apps.recs.ranking_features import QUANTIZE_QUERIES_FROM
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.rules import decode_cursor


def coffee_history(user: str = "coffee-fan") -> list[Event]:
    return [
        Event(user, "kt-003", "purchase", 100.0),
        Event(user, "kt-002", "view", 200.0),
        Event(user, "kt-010", "click", 300.0),
    ]


@pytest.fixture(scope="module")
def shared(sample_events, embedder) -> Recommender:
    """Built and tuned once; tests that change the catalog use `recommender` instead."""
    engine = Recommender(load_catalog(DEFAULT_ITEMS), embedder, events=sample_events)
    engine.build()
    engine.tune_combiner()  # as the app does at start without a trained model
    return engine


@pytest.fixture
def recommender(shared, catalog, sample_events, embedder) -> Recommender:
    """A private copy (same vectors and combiner) that a test may modify."""
    engine = Recommender(catalog, embedder, events=sample_events, combiner=shared.combiner)
    engine.build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
    return engine


def ids(result) -> list[str]:
    return [r.item.item_id for r in result.items]


def test_unknown_user_gets_the_popular_cold_start_list(shared, sample_events):
    result = shared.recommend("never-seen", [], k=5)
    assert result.cold_start
    assert len(result.items) == 5
    assert all(r.reason.startswith("Popular") or r.reason == "Trending now" for r in result.items)
    users_per_item: dict[str, set[str]] = {}
    for event in sample_events:
        users_per_item.setdefault(event.item_id, set()).add(event.user_id)
    most_popular = max(users_per_item, key=lambda i: len(users_per_item[i]))
    assert most_popular in ids(shared.recommend("never-seen", [], k=10))


def test_seen_items_are_not_recommended_again(shared):
    history = coffee_history()
    result = shared.recommend("coffee-fan", history, k=30)
    assert not result.cold_start
    assert not {e.item_id for e in history} & set(ids(result))


def test_purchases_stay_excluded_when_seen_items_are_allowed(shared):
    everything = shared.recommend("coffee-fan", coffee_history(), k=100, exclude_seen=False)
    assert "kt-002" in ids(everything)  # only viewed: allowed again
    assert "kt-003" not in ids(everything)  # bought: never


def test_profile_drives_the_ranking_towards_the_users_interest(shared):
    top = shared.recommend("coffee-fan", coffee_history(), k=5)
    assert sum(r.item.category == "Kitchen" for r in top.items) >= 3
    reasons = [r.reason for r in top.items]
    assert any(reason.startswith("Because you") for reason in reasons), reasons


def test_category_filter_returns_only_that_category(shared):
    result = shared.recommend("coffee-fan", coffee_history(), k=8, category="beauty")
    assert len(result.items) == 8
    assert {r.item.category for r in result.items} == {"Beauty"}


def test_diversity_knob_changes_the_list_and_spreads_it(shared):
    def mean_similarity(item_ids: list[str]) -> float:
        vectors = [shared.vector_of(i) for i in item_ids]
        pairs = list(itertools.combinations(vectors, 2))
        return float(np.mean([a @ b for a, b in pairs]))

    focused = ids(shared.recommend("coffee-fan", coffee_history(), k=8, diversity=0.0))
    diverse = ids(shared.recommend("coffee-fan", coffee_history(), k=8, diversity=0.8))
    assert focused != diverse
    assert mean_similarity(diverse) < mean_similarity(focused)


def test_pages_continue_where_the_previous_page_ended(shared):
    full = shared.recommend("coffee-fan", coffee_history(), k=10)
    first = shared.recommend("coffee-fan", coffee_history(), k=5)
    second = shared.recommend(
        "coffee-fan", coffee_history(), k=5, offset=decode_cursor(first.next_cursor)
    )
    assert ids(first) + ids(second) == ids(full)
    assert first.next_offset == 5


@pytest.mark.parametrize("user", ["coffee-fan", "nobody-yet"])
def test_paging_past_the_candidate_pool_never_repeats_or_reorders_items(
    shared, catalog, sample_events, embedder, user
):
    """The pool grows with the offset; a bigger pool brought in better items, which pushed
    items already shown onto later pages (and a cold user's pages stopped early)."""
    engine = Recommender(
        catalog, embedder, events=sample_events, combiner=shared.combiner, candidate_pool=8
    )
    engine.build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
    history = coffee_history(user) if user == "coffee-fan" else []
    shown, offset = [], 0
    while offset is not None:
        page = engine.recommend(user, history, k=3, offset=offset)
        shown += ids(page)
        offset = page.next_offset
    assert len(shown) == len(set(shown))
    assert len(shown) > 40  # pages go on while items are left, not while the first pool lasts
    assert ids(engine.recommend(user, history, k=12)) == shown[:12]


def test_added_item_is_recommendable_immediately(recommender):
    tamper = Item(
        item_id="kt-100",
        title="Espresso Tamper and Distribution Tool",
        description="Stainless steel espresso tamper with a spring-loaded distributor for even "
        "coffee pucks and better extraction from your espresso machine.",
        category="Kitchen",
        tags=("coffee", "espresso", "barista"),
    )
    before = len(recommender.catalog)
    recommender.upsert_items([tamper])
    assert len(recommender.catalog) == before + 1
    assert "kt-100" in ids(recommender.recommend("coffee-fan", coffee_history(), k=10))
    similar = [r.item.item_id for r in recommender.similar("kt-003", k=5)]
    assert "kt-100" in similar


def test_one_upsert_adds_several_new_items_and_the_last_version_of_a_repeated_one_wins(
    recommender,
):
    first = Item("kt-201", "Milk Frother", "Handheld frother for lattes", "Kitchen")
    second = Item("kt-202", "Coffee Scale", "A scale with a timer for pour-over coffee", "Kitchen")
    renamed = Item("kt-201", "Milk Frother Pro", "Handheld frother for lattes", "Kitchen")
    before = len(recommender.catalog)
    recommender.upsert_items([first, second, renamed])
    assert len(recommender.catalog) == before + 2
    listed = recommender.recommend("coffee-fan", coffee_history(), k=200, exclude_seen=False)
    titles = {r.item.item_id: r.item.title for r in listed.items}
    assert titles["kt-201"] == "Milk Frother Pro" and "kt-202" in titles
    np.testing.assert_array_equal(
        recommender.vector_of("kt-201"), recommender.encoder.encode([renamed.text])[0]
    )


def test_requests_are_answered_while_an_upsert_computes_its_feature_tables(
    recommender, monkeypatch
):
    import threefold.apps.recs.recommender as module

    answered: list[int] = []
    compute = module.feature_tables

    def tables_while_a_request_comes_in(items, vectors, stats):  # type: ignore[no-untyped-def]
        if not answered:
            request = threading.Thread(
                target=lambda: answered.append(
                    len(recommender.recommend("coffee-fan", coffee_history(), k=3).items)
                )
            )
            request.start()
            request.join(timeout=60)  # blocked by the upsert's lock, it would wait for it
            assert answered == [3], "a request waited for the upsert's feature tables"
        return compute(items, vectors, stats)

    monkeypatch.setattr(module, "feature_tables", tables_while_a_request_comes_in)
    recommender.upsert_items([Item("kt-301", "Moka Pot", "Stovetop coffee maker", "Kitchen")])
    assert answered == [3]
    assert recommender.has_item("kt-301")


def test_requests_and_edits_go_on_while_the_combiner_is_tuned(recommender, monkeypatch):
    """The fit reads the serving vector matrix itself (no copy under the lock) while a
    request is answered and an item is edited; a new matrix grown meanwhile is not its."""
    import threefold.apps.recs.recommender as module

    seen: list[bool] = []
    tune = module.tune_combiner

    def tune_while_the_app_goes_on(items, vectors, events, encoder, settings):  # type: ignore[no-untyped-def]
        seen.append(vectors is recommender._vectors)
        done: list[int] = []

        def go_on() -> None:
            done.append(len(recommender.recommend("coffee-fan", coffee_history(), k=3).items))
            recommender.upsert_items([Item("kt-302", "Milk Frother", "Foams milk", "Kitchen")])

        other = threading.Thread(target=go_on)
        other.start()
        other.join(timeout=60)  # blocked by the lock, it would wait for the fit
        assert done == [3], "a request or an edit waited for the combiner fit"
        assert vectors is not recommender._vectors  # the upsert grew a new matrix
        return tune(items, vectors, events, encoder, settings)

    monkeypatch.setattr(module, "tune_combiner", tune_while_the_app_goes_on)
    metrics = recommender.tune_combiner()
    assert seen == [True]
    assert metrics
    assert recommender.has_item("kt-302")


def test_an_edit_landing_during_an_upsert_is_kept_and_the_upsert_computed_again(
    recommender, monkeypatch
):
    import threefold.apps.recs.recommender as module

    first = Item("kt-401", "Burr Grinder", "Conical burr coffee grinder", "Kitchen")
    meanwhile = Item("kt-402", "Cold Brew Jar", "A jar for cold brew coffee", "Kitchen")
    calls: list[int] = []
    compute = module.feature_tables

    def another_edit_lands_meanwhile(items, vectors, stats):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        if len(calls) == 1:
            recommender.upsert_items([meanwhile])  # completes before the first upsert installs
        return compute(items, vectors, stats)

    monkeypatch.setattr(module, "feature_tables", another_edit_lands_meanwhile)
    before = len(recommender.catalog)
    recommender.upsert_items([first])
    # first attempt (+1), the edit meanwhile (+1), the first upsert again on top of it (+2)
    assert calls == [before + 1, before + 1, before + 2]
    listed = recommender.recommend("coffee-fan", coffee_history(), k=200, exclude_seen=False)
    assert {"kt-401", "kt-402"} <= set(ids(listed))
    assert recommender.similar("kt-401", k=3) and recommender.similar("kt-402", k=3)


def test_an_upsert_that_a_swap_overtakes_embeds_again_outside_the_lock(
    catalog, sample_events, monkeypatch
) -> None:
    import threefold.apps.recs.recommender as module
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.recommender import Ranker
    from threefold.core.encoder import HashingEncoder

    grinder = Item("kt-401", "Burr Grinder", "Conical burr coffee grinder", "Kitchen")
    answered: list[str] = []

    class AnswersARequestWhileEmbeddingTheEdit(HashingEncoder):
        def encode(self, texts, **kwargs):  # type: ignore[no-untyped-def]
            if grinder.text in texts:
                ask = threading.Thread(
                    target=lambda: answered.append(
                        engine.recommend("coffee-fan", coffee_history(), k=3).model_version
                    )
                )
                ask.start()
                ask.join(timeout=60)  # blocked by the upsert's lock, it would wait for it
            return super().encode(texts, **kwargs)

    engine = Recommender(catalog, HashingEncoder(128), events=sample_events, model_version="v1")
    engine.build()
    compute = module.feature_tables
    swapped: list[bool] = []

    def a_swap_lands_meanwhile(items, vectors, stats):  # type: ignore[no-untyped-def]
        if not swapped:
            swapped.append(True)
            new = Ranker(AnswersARequestWhileEmbeddingTheEdit(64), LinearCombiner(), version="v2")
            engine.swap_ranker(new)
        return compute(items, vectors, stats)

    monkeypatch.setattr(module, "feature_tables", a_swap_lands_meanwhile)
    returned = engine.upsert_items([grinder])
    assert answered == ["v2"], "a request waited while the upsert embedded the edit again"
    assert returned["kt-401"].shape == (64,)
    assert engine.vector_of("kt-401").shape == (64,)
    assert engine.similar("kt-401", k=3)


def test_removed_item_is_never_recommended(recommender):
    target = ids(recommender.recommend("coffee-fan", coffee_history(), k=1))[0]
    assert recommender.remove_item(target)
    assert target not in ids(recommender.recommend("coffee-fan", coffee_history(), k=70))
    assert recommender.similar(target) == []
    assert not recommender.remove_item(target)


def test_a_removed_item_is_never_named_as_the_reason(recommender):
    """`GET /api/items/<id>` is a 404 after a delete: "Because you viewed …" must not name it."""
    history = coffee_history()
    before = recommender.recommend("coffee-fan", history, k=20).items
    named = {r.because for r in before if r.because is not None}
    assert named, [r.reason for r in before]
    for item_id in named:
        title = recommender.catalog[item_id].title
        assert recommender.remove_item(item_id)
        after = recommender.recommend("coffee-fan", history, k=20).items
        assert item_id not in {r.because for r in after}
        assert not any(title in r.reason for r in after), [r.reason for r in after]


def test_a_ranker_swap_reembeds_the_catalog_and_keeps_items_added_meanwhile(
    catalog, sample_events
) -> None:
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.recommender import Ranker
    from threefold.core.encoder import HashingEncoder

    engine = Recommender(catalog, HashingEncoder(128), events=sample_events)
    engine.build()
    added = Item("new-1", "Pour-Over Coffee Kettle", "A gooseneck kettle for coffee", "Kitchen")
    engine.remove_item("bk-001")
    returning = next(item for item in catalog if item.item_id == "kt-001")
    engine.remove_item("kt-001")

    class AddsAnItemWhileEmbedding(HashingEncoder):
        def encode(self, texts, **kwargs):  # type: ignore[no-untyped-def]
            if not engine.has_item("new-1"):
                engine.upsert_items([added])  # an admin edit lands mid-swap (old encoder)
                engine.remove_item("kt-003")  # and a removal
                engine.upsert_items([returning])  # a removed item back, the same object
            return super().encode(texts, **kwargs)

    engine.swap_ranker(
        Ranker(encoder=AddsAnItemWhileEmbedding(64), combiner=LinearCombiner(), version="v2")
    )
    assert engine.model_version == "v2"
    assert engine.vector_of("new-1").shape == (64,)  # embedded again by the new encoder
    assert engine.vector_of("bk-001") is None  # a removed item stays removed
    assert engine.vector_of("kt-003") is None  # removed during the swap: out of the new index
    listed = engine.recommend("coffee-fan", coffee_history(), k=10, exclude_seen=True)
    assert listed.model_version == "v2"
    assert engine.similar("new-1", k=3)  # the new index holds it
    every = engine.recommend("coffee-fan", coffee_history(), k=100, exclude_seen=False)
    assert "kt-003" not in ids(every) and {"new-1", "kt-001"} <= set(ids(every))
    assert all(r.item.item_id != "kt-003" for r in engine.similar("kt-001", k=100))
    assert any(r.item.item_id == "kt-001" for r in engine.similar("kt-002", k=100))


def test_a_swapped_ranker_brings_the_cooccurrence_neighbours_it_was_fitted_with(
    catalog, sample_events
) -> None:
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.recommender import DEFAULT_NEIGHBOURS, Ranker
    from threefold.core.encoder import HashingEncoder

    engine = Recommender(catalog, HashingEncoder(64), events=sample_events, neighbours=1)
    engine.build()
    assert engine.neighbours == 1
    narrow = engine.recommend("coffee-fan", coffee_history(), k=10)
    engine.swap_ranker(  # fitted on every neighbour (None), as `recs build` fits by default
        Ranker(encoder=HashingEncoder(64), combiner=LinearCombiner(), version="v2", neighbours=None)
    )
    assert engine.neighbours is None and engine._stats.neighbours is None
    wide = engine.recommend("coffee-fan", coffee_history(), k=10)
    assert wide.model_version == "v2" and ids(wide)
    assert Ranker(encoder=HashingEncoder(8), combiner=LinearCombiner()).neighbours == (
        DEFAULT_NEIGHBOURS
    )
    assert narrow.items


def test_the_combiner_is_tuned_on_the_cooccurrence_table_it_serves_with(
    catalog, sample_events, monkeypatch
) -> None:
    from threefold.apps.recs import recommender as module
    from threefold.core.encoder import HashingEncoder

    fitted_with = []
    real = module.tune_combiner

    def recording(items, vectors, events, encoder, settings):  # type: ignore[no-untyped-def]
        fitted_with.append(settings.neighbours)
        return real(items, vectors, events, encoder, settings)

    monkeypatch.setattr(module, "tune_combiner", recording)
    engine = Recommender(catalog, HashingEncoder(64), events=sample_events, neighbours=3)
    engine.build()
    assert engine.tune_combiner()["users"] > 10
    assert fitted_with == [3]


def test_requests_are_answered_while_a_swap_embeds_and_indexes_the_catalog(
    catalog, sample_events
) -> None:
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.recommender import Ranker
    from threefold.core.encoder import HashingEncoder
    from threefold.core.index import FaissIndex

    answered: list[str] = []

    def answer_a_request_meanwhile() -> None:
        def ask() -> None:
            answered.append(engine.recommend("coffee-fan", coffee_history(), k=3).model_version)

        request = threading.Thread(target=ask)
        request.start()
        request.join(timeout=60)  # a request blocked by the swap would wait for it: deadlock
        assert answered == ["v1"], "a request waited for the swap's index build"

    class IndexThatServesARequestFirst(FaissIndex):
        def add(self, ids, vectors):  # type: ignore[no-untyped-def]
            if swapping.is_set() and not answered:
                answer_a_request_meanwhile()
            super().add(ids, vectors)

    swapping = threading.Event()
    engine = Recommender(
        catalog,
        HashingEncoder(128),
        events=sample_events,
        model_version="v1",
        index_factory=lambda dimension: IndexThatServesARequestFirst(dimension, use_gpu=False),
    )
    engine.build()
    swapping.set()
    engine.swap_ranker(Ranker(encoder=HashingEncoder(64), combiner=LinearCombiner(), version="v2"))
    assert answered == ["v1"]
    assert engine.recommend("coffee-fan", coffee_history(), k=3).model_version == "v2"


def test_an_approximate_index_gives_the_same_answers_on_the_shipped_catalog(
    shared, catalog, sample_events, embedder
):
    from threefold.core.index import FaissIndex

    made: list[FaissIndex] = []

    def ivf(dimension: int) -> FaissIndex:
        made.append(FaissIndex(dimension, exact_threshold=20, nprobe=10_000, use_gpu=False))
        return made[-1]

    engine = Recommender(
        catalog, embedder, events=sample_events, combiner=shared.combiner, index_factory=ivf
    )
    engine.build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
    assert [index.kind for index in made] == ["ivf"]
    # every list probed: the same neighbours as exact search, so the same answers
    history = coffee_history()
    expected = shared.recommend("coffee-fan", history, k=5).to_dict()["items"]
    assert engine.recommend("coffee-fan", history, k=5).to_dict()["items"] == expected
    assert [r.item.item_id for r in engine.similar("kt-003", 5)] == [
        r.item.item_id for r in shared.similar("kt-003", 5)
    ]


def test_int8_queries_embed_the_history_with_a_twin_and_keep_item_vectors_fp32(
    shared, catalog, sample_events, cpu_embedder
) -> None:
    embedder = cpu_embedder
    engine = Recommender(
        catalog,
        embedder,
        events=sample_events,
        combiner=shared.combiner,
        quantize_queries=True,
    )
    engine.build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
    assert engine._query_encoder.quantize and engine.encoder is embedder
    np.testing.assert_array_equal(engine.vector_of("kt-003"), shared.vector_of("kt-003"))
    history = coffee_history()
    fp32 = [r.item.item_id for r in shared.recommend("coffee-fan", history, k=5).items]
    int8 = [r.item.item_id for r in engine.recommend("coffee-fan", history, k=5).items]
    assert len(set(fp32) & set(int8)) >= 4  # a slightly different query, nearly the same list


def test_unset_query_precision_is_fp32_below_the_size_threshold_and_int8_from_it(
    shared, catalog, sample_events, cpu_embedder, monkeypatch
) -> None:
    from threefold.apps.recs import ranking_features

    assert ranking_features.quantize_queries_for(None, QUANTIZE_QUERIES_FROM - 1) is False
    assert ranking_features.quantize_queries_for(None, QUANTIZE_QUERIES_FROM) is True
    assert ranking_features.quantize_queries_for(False, 10**7) is False
    assert ranking_features.quantize_queries_for(True, 1) is True
    known = {item_id: shared.vector_of(item_id) for item_id in catalog.ids}

    small = Recommender(catalog, cpu_embedder, events=sample_events, combiner=shared.combiner)
    small.build(known)
    assert small.quantize_queries is None and small._query_encoder is cpu_embedder

    monkeypatch.setattr(ranking_features, "QUANTIZE_QUERIES_FROM", len(catalog))
    large = Recommender(catalog, cpu_embedder, events=sample_events, combiner=shared.combiner)
    large.build(known)
    assert large._query_encoder is not cpu_embedder and large._query_encoder.quantize


@pytest.mark.gpu
def test_a_gpu_encoder_serves_fp32_queries_even_with_int8_queries_on(
    shared, catalog, sample_events, embedder
) -> None:
    if embedder.device == "cpu":
        pytest.skip("needs a CUDA GPU")
    engine = Recommender(
        catalog, embedder, events=sample_events, combiner=shared.combiner, quantize_queries=True
    )
    engine.build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
    assert engine._query_encoder is embedder  # int8 dynamic quantization is CPU only
    history = coffee_history()
    assert (
        engine.recommend("coffee-fan", history, k=5).to_dict()["items"]
        == (shared.recommend("coffee-fan", history, k=5).to_dict()["items"])
    )


def test_a_slow_statistics_rebuild_runs_in_the_background_without_blocking_requests(
    catalog, sample_events
) -> None:
    import threading

    from threefold.core.encoder import HashingEncoder

    release = threading.Event()

    class SlowCounts(Recommender):
        def _count(self, item_ids, events, ranker=None, **options):  # type: ignore[no-untyped-def]
            if threading.current_thread().name == "recs-stats":
                assert release.wait(60)  # held until the test has made its requests
            return super()._count(item_ids, events, ranker, **options)

    engine = SlowCounts(
        catalog,
        HashingEncoder(64),
        events=sample_events,
        stats_refresh_seconds=0.0,
        inline_rebuild_seconds=0.0,  # every rebuild counts as slow
    )
    engine.build()
    before = engine._stats
    newcomer = "bk-001"
    assert engine.recommend("visitor", [], k=1).items[0].item.item_id != newcomer
    engine.add_events([Event(f"fan-{n}", newcomer, "purchase", 10_000.0 + n) for n in range(200)])
    answered: list[list[str]] = []

    def ask() -> None:
        listed = engine.recommend("visitor", [], k=1)
        answered.append([r.item.item_id for r in listed.items])

    for _ in range(2):  # the second finds the first rebuild still running: no second thread
        asker = threading.Thread(target=ask)
        asker.start()
        asker.join(30)
        assert not asker.is_alive(), "a request waited for the statistics rebuild"
    assert engine._stats is before and answered[0][0] != newcomer
    assert not engine.wait_for_statistics(timeout=0.1)  # still counting
    release.set()
    assert engine.wait_for_statistics(timeout=60)
    assert engine._stats is not before
    assert engine.recommend("visitor", [], k=1).items[0].item.item_id == newcomer


def test_a_fast_statistics_rebuild_stays_inside_the_request(catalog, sample_events) -> None:
    from threefold.core.encoder import HashingEncoder

    engine = Recommender(
        catalog, HashingEncoder(64), events=sample_events, stats_refresh_seconds=0.0
    )
    engine.build()
    engine.add_events([Event(f"fan-{n}", "bk-001", "purchase", 10_000.0 + n) for n in range(200)])
    # the shipped log counts in milliseconds: the very next request sees the new events
    assert engine.recommend("visitor", [], k=1).items[0].item.item_id == "bk-001"
    assert engine._stats_thread is None


def test_the_slot_reads_new_candidates_and_the_sequence_score_and_keeps_the_order(
    shared, catalog, sample_events, embedder, monkeypatch
) -> None:
    """Wiring on the shipped data (the rule itself: test_rules.py; its effect: the cold-start
    bench). Every candidate without interactions is new to the rule, its preference is the
    sequence ranker's score, and the known items keep their places."""
    from threefold.apps.recs import recommender as module
    from threefold.apps.recs.sequence_training import SequenceSettings, train_sequence_model

    ids = [item.item_id for item in catalog]
    vectors = np.stack([shared.vector_of(item_id) for item_id in ids])
    settings = SequenceSettings(epochs=4, check_every=2, patience=2, max_seconds=60.0)
    sequence = train_sequence_model(ids, vectors, sample_events, settings=settings)
    added = Item("new-1", "Garden Hose 30 m", "A flexible hose with a spray nozzle", "Garden")
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def spy(scores, new, preference, k):  # type: ignore[no-untyped-def]
        seen.append((np.asarray(scores), np.asarray(new), np.asarray(preference)))
        return rule(scores, new, preference, k)

    engines = {}
    for slot in (False, True):
        engines[slot] = Recommender(
            catalog,
            embedder,
            events=sample_events,
            combiner=shared.combiner,
            sequence=sequence,
            new_item_slot=slot,
        )
        engines[slot].build({item_id: shared.vector_of(item_id) for item_id in catalog.ids})
        engines[slot].upsert_items([added])  # no interactions yet: a new item
    rule = module.new_item_slot
    monkeypatch.setattr(module, "new_item_slot", spy)
    history = coffee_history()
    for k in (5, 20, 60):
        off, on = (
            [r.item.item_id for r in engines[slot].recommend("coffee-fan", history, k=k).items]
            for slot in (False, True)
        )
        assert on[: k - 1] == off[: k - 1]  # known items keep their places
        assert on[k - 1] in (off[k - 1], "new-1")
    assert len(seen) == 3  # only the engine with the slot on calls the rule
    scores, new, preference = seen[0]
    assert new.sum() == 1 and new.shape == scores.shape == preference.shape  # "new-1" only
    builder = engines[True]._builder
    expected = builder.sequence_scores(sequence, [builder.profile("coffee-fan", history)])[0]
    assert preference[new][0] == pytest.approx(expected[builder.position["new-1"]])


def test_the_query_pool_serves_a_worker_forked_after_it_ran() -> None:
    """gunicorn forks workers; a pool copied with its idle-thread bookkeeping would hang."""
    import os

    from threefold.apps.recs import recommender as module

    assert module.QUERY_POOL.submit(int).result(timeout=10) == 0  # the parent's thread is idle
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its pool answers
        try:
            os._exit(0 if module.QUERY_POOL.submit(lambda: 7).result(timeout=10) == 7 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_sequence_item_table_is_computed_by_starts_edits_and_swaps_kept_by_rebuilds(
    catalog, sample_events
) -> None:
    """New statistics leave items and vectors alone, so the next request need not recompute
    the sequence ranker's table over the catalog (seconds at 1M items); an item edit or a
    ranker swap needs a new table, and computes it itself instead of the next request."""
    from threefold.apps.recs.catalog import Item
    from threefold.apps.recs.combiner import LinearCombiner
    from threefold.apps.recs.recommender import Ranker
    from threefold.apps.recs.sequence_model import SequenceConfig, SequenceModel
    from threefold.core.encoder import HashingEncoder

    model = SequenceModel(SequenceConfig(text_dimension=64), [i.item_id for i in catalog])
    tables: list[int] = []
    real = model.item_table
    model.item_table = lambda vectors, ids: tables.append(len(ids)) or real(vectors, ids)
    engine = Recommender(
        catalog,
        HashingEncoder(64),
        sequence=model,
        events=sample_events,
        stats_refresh_seconds=0.0,
        inline_rebuild_seconds=0.0,  # every rebuild runs in the background
    )
    engine.build()
    assert len(tables) == 1  # computed at the start, not by the first request
    history = [e for e in sample_events if e.user_id == sample_events[0].user_id]
    engine.recommend(sample_events[0].user_id, history, k=3)
    assert len(tables) == 1
    engine.add_events([Event("fan", "bk-001", "purchase", 10_000.0)])
    engine.recommend(sample_events[0].user_id, history, k=3)  # starts the rebuild
    assert engine.wait_for_statistics(timeout=60)
    engine.recommend(sample_events[0].user_id, history, k=3)
    assert len(tables) == 1  # the rebuilt builder shares the table
    items = len(catalog)
    engine.upsert_items([Item("bk-new", "A new book", "About trains.", "Books")])
    assert tables == [items, items + 1]  # a new catalog state: a new table, made by the edit
    engine.recommend(sample_events[0].user_id, history, k=3)
    assert len(tables) == 2  # not by the next request
    swapped = SequenceModel(SequenceConfig(text_dimension=64), [i.item_id for i in catalog])
    swapped.item_table = lambda vectors, ids: tables.append(-len(ids)) or real(vectors, ids)
    before = engine._builder
    engine.swap_ranker(Ranker(HashingEncoder(64), LinearCombiner(), "v2", sequence=swapped))
    assert tables[2:] == [-(items + 1)]  # the swap computed the new ranker's table
    assert engine._builder.by_id is before.by_id  # and kept the item-side tables
    engine.recommend(sample_events[0].user_id, history, k=3)
    assert len(tables) == 3
