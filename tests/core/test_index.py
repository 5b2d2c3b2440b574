"""FaissIndex: one shared contract every index mode (exact, IVF, CPU, GPU) runs, then specifics."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from threefold.core.device import faiss_gpu_available
from threefold.core.errors import ConfigError, ModelError
from threefold.core.index import FaissIndex, build_index

DIM = 32
N = 300

GPU_SKIP = pytest.mark.skipif(
    not faiss_gpu_available(),
    reason="needs faiss-gpu and a CUDA GPU (pip install threefold[gpu] on a GPU machine)",
)

# Each FaissIndex mode: a factory taking the dimension.
IMPLEMENTATIONS = [
    pytest.param(lambda dim: FaissIndex(dim, use_gpu=False), id="faiss-exact"),
    # A small threshold forces the IVF index once the contract's N vectors are added; nprobe
    # then covers every list, so results must match exact search.
    pytest.param(lambda dim: FaissIndex(dim, exact_threshold=64, use_gpu=False), id="faiss-ivf"),
    pytest.param(
        lambda dim: FaissIndex(dim, use_gpu=True),
        id="faiss-gpu-exact",
        marks=[pytest.mark.gpu, GPU_SKIP],
    ),
    pytest.param(
        lambda dim: FaissIndex(dim, exact_threshold=64, use_gpu=True),
        id="faiss-gpu-ivf",
        marks=[pytest.mark.gpu, GPU_SKIP],
    ),
]


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ids_for(n: int, prefix: str = "doc") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def brute_force(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    scores = vectors @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_index(request: pytest.FixtureRequest) -> Callable[[int], FaissIndex]:
    return request.param


@pytest.fixture
def filled(make_index: Callable[[int], FaissIndex]) -> tuple[FaissIndex, list[str], np.ndarray]:
    vectors = unit_vectors(N)
    ids = ids_for(N)
    index = make_index(DIM)
    index.add(ids, vectors)
    return index, ids, vectors


# --------------------------------------------------------------------------- contract
class TestIndexContract:
    """Behaviour every index mode must show (run once per mode)."""

    def test_is_a_faiss_index(self, filled) -> None:
        index, _, _ = filled
        assert isinstance(index, FaissIndex)
        assert index.dimension == DIM

    def test_search_finds_exact_neighbours_best_first(self, filled) -> None:
        index, ids, vectors = filled
        queries = unit_vectors(5, seed=1)
        results = index.search(queries, 10)
        assert len(results) == 5
        for query, hits in zip(queries, results, strict=True):
            assert [h[0] for h in hits] == brute_force(vectors, ids, query, 10)
            scores = [h[1] for h in hits]
            assert scores == sorted(scores, reverse=True)
            expected = vectors[[ids.index(h[0]) for h in hits]] @ query
            np.testing.assert_allclose(scores, expected, atol=1e-5)

    def test_vector_is_its_own_nearest_neighbour(self, filled) -> None:
        index, ids, vectors = filled
        hits = index.search(vectors[:20], 1)
        assert [h[0][0] for h in hits] == ids[:20]
        assert all(abs(h[0][1] - 1.0) < 1e-5 for h in hits)

    def test_single_vector_query(self, filled) -> None:
        index, ids, vectors = filled
        results = index.search(vectors[7], 3)
        assert len(results) == 1
        assert results[0][0][0] == ids[7]

    def test_k_is_capped_at_size(self, make_index) -> None:
        index = make_index(DIM)
        index.add(["a", "b", "c"], unit_vectors(3))
        assert len(index.search(unit_vectors(1, seed=5), 50)[0]) == 3

    def test_empty_index_returns_empty_lists(self, make_index) -> None:
        index = make_index(DIM)
        assert len(index) == 0
        assert index.ids == []
        assert index.search(unit_vectors(2), 5) == [[], []]

    def test_len_contains_ids(self, filled) -> None:
        index, ids, _ = filled
        assert len(index) == N
        assert "doc-3" in index
        assert "nope" not in index
        assert sorted(index.ids) == sorted(ids)

    def test_readding_an_id_replaces_its_vector(self, filled) -> None:
        index, _, vectors = filled
        index.add(["doc-0"], vectors[1:2])
        assert len(index) == N
        np.testing.assert_allclose(index.get_vector("doc-0"), vectors[1], atol=1e-6)
        top_two = {h[0] for h in index.search(vectors[1], 2)[0]}
        assert top_two == {"doc-0", "doc-1"}

    def test_get_vector_returns_stored_vector(self, filled) -> None:
        index, _, vectors = filled
        np.testing.assert_allclose(index.get_vector("doc-42"), vectors[42], atol=1e-6)
        with pytest.raises(KeyError, match="missing"):
            index.get_vector("missing")

    def test_removed_ids_never_come_back(self, filled) -> None:
        index, ids, vectors = filled
        gone = ids[:50]
        assert index.remove([*gone, "unknown-id"]) == 50
        assert index.remove(gone) == 0
        assert len(index) == N - 50
        assert not any(g in index for g in gone)
        for hits in index.search(vectors[:50], 20):
            assert len(hits) == 20
            assert not {h[0] for h in hits} & set(gone)

    def test_add_after_remove(self, filled) -> None:
        index, _, vectors = filled
        index.remove(["doc-5"])
        index.add(["doc-5", "new"], vectors[5:7])
        assert len(index) == N + 1
        assert index.search(vectors[5], 1)[0][0][0] == "doc-5"

    def test_dimension_mismatch_names_both(self, filled) -> None:
        index, _, _ = filled
        with pytest.raises(ConfigError, match=r"dimension 16 but the index has dimension 32"):
            index.search(unit_vectors(1, dim=16), 3)
        with pytest.raises(ConfigError, match=r"dimension 16 but the index has dimension 32"):
            index.add(["x"], unit_vectors(1, dim=16))

    def test_bad_input_is_rejected(self, make_index) -> None:
        index = make_index(DIM)
        with pytest.raises(ConfigError, match="2 ids but 3 vectors"):
            index.add(["a", "b"], unit_vectors(3))
        with pytest.raises(ConfigError, match="must be strings"):
            index.add([1, 2], unit_vectors(2))
        with pytest.raises(ConfigError, match="k must be a positive int"):
            index.search(unit_vectors(1), 0)
        bad = unit_vectors(1)
        bad[0, 0] = np.nan
        with pytest.raises(ConfigError, match="NaN"):
            index.add(["a"], bad)

    def test_save_load_round_trip_gives_identical_neighbours(
        self, filled, tmp_path: Path, make_index
    ) -> None:
        index, _, vectors = filled
        index.remove(["doc-1", "doc-2"])
        queries = unit_vectors(10, seed=3)
        before = index.search(queries, 8)
        index.save(tmp_path / "idx")
        loaded = type(index).load(tmp_path / "idx", use_gpu=index.use_gpu)
        assert loaded.search(queries, 8) == before
        assert loaded.ids == index.ids
        assert "doc-1" not in loaded
        # ids stay stable after loading: new ids do not collide with existing ones.
        loaded.add(["fresh"], vectors[1:2])
        assert loaded.search(vectors[1], 1)[0][0][0] == "fresh"
        assert loaded.search(vectors[3], 1)[0][0][0] == "doc-3"

    def test_concurrent_adds_and_searches(self, make_index) -> None:
        index = make_index(DIM)
        vectors = unit_vectors(400)
        errors: list[BaseException] = []

        def writer(part: int) -> None:
            try:
                for start in range(part * 100, part * 100 + 100, 10):
                    index.add(ids_for(400)[start : start + 10], vectors[start : start + 10])
            except BaseException as exc:  # collected and re-raised in the test thread
                errors.append(exc)

        def reader() -> None:
            try:
                for _ in range(30):
                    for hits in index.search(vectors[:4], 5):
                        assert all(h[0].startswith("doc-") for h in hits)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(p,)) for p in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(index) == 400
        assert index.search(vectors[399], 1)[0][0][0] == "doc-399"


# --------------------------------------------------------------------------- FAISS specifics
def test_switches_to_ivf_above_threshold_and_back() -> None:
    index = FaissIndex(DIM, exact_threshold=100, use_gpu=False)
    vectors = unit_vectors(400)
    ids = ids_for(400)
    index.add(ids[:99], vectors[:99])
    assert index.kind == "exact"
    index.add(ids[99:], vectors[99:])
    assert index.kind == "ivf"
    assert index.search(vectors[250], 1)[0][0][0] == "doc-250"
    index.remove(ids[:380])
    assert index.kind == "exact"
    assert len(index) == 20
    np.testing.assert_allclose(index.get_vector("doc-390"), vectors[390], atol=1e-6)
    assert index.search(vectors[390], 1)[0][0][0] == "doc-390"


def test_ivf_default_nprobe_keeps_high_recall() -> None:
    # Clustered data, like real embeddings: 40 topics, 3000 documents.
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, DIM))
    vectors = centres[rng.integers(0, 40, 3000)] + 0.35 * rng.standard_normal((3000, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = ids_for(3000)
    exact = build_index(ids, vectors, use_gpu=False)
    approx = build_index(ids, vectors, exact_threshold=1000, use_gpu=False)
    assert (exact.kind, approx.kind) == ("exact", "ivf")
    queries = vectors[rng.choice(3000, 100, replace=False)] + 0.1 * rng.standard_normal((100, DIM))
    truth = exact.search(queries.astype(np.float32), 10)
    found = approx.search(queries.astype(np.float32), 10)
    recall = np.mean(
        [len({h[0] for h in f} & {h[0] for h in t}) / 10 for f, t in zip(found, truth, strict=True)]
    )
    assert recall >= 0.9


def test_build_index_rejects_non_matrix() -> None:
    with pytest.raises(ConfigError, match="2-D"):
        build_index(["a"], np.zeros(DIM, dtype=np.float32))


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="dimension must be a positive int"):
        FaissIndex(0)
    with pytest.raises(ConfigError, match="exact_threshold"):
        FaissIndex(DIM, exact_threshold=1)


@pytest.mark.skipif(faiss_gpu_available(), reason="checks the hint shown when faiss-gpu is absent")
def test_use_gpu_without_faiss_gpu_gives_install_hint() -> None:
    with pytest.raises(ConfigError, match=r"pip install threefold\[gpu\]"):
        FaissIndex(DIM, use_gpu=True)


def test_use_gpu_default_follows_hardware() -> None:
    assert FaissIndex(DIM).use_gpu is faiss_gpu_available()


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "idx"
    build_index(ids_for(10), unit_vectors(10), use_gpu=False).save(folder)
    return folder


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        FaissIndex.load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["index.faiss", "ids.json", "meta.json"])
def test_load_missing_file_names_it(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ModelError, match=rf"missing \['{name}'\]"):
        FaissIndex.load(saved)


def test_load_corrupt_index_file(saved: Path) -> None:
    (saved / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(ModelError, match=r"index\.faiss is not a readable FAISS index"):
        FaissIndex.load(saved)


@pytest.mark.parametrize("name", ["ids.json", "meta.json"])
def test_load_corrupt_json_names_file(saved: Path, name: str) -> None:
    (saved / name).write_text("{broken", encoding="utf-8")
    with pytest.raises(ModelError, match=rf"{name.replace('.', '[.]')} is not readable JSON"):
        FaissIndex.load(saved)


def test_load_detects_ids_out_of_step_with_vectors(saved: Path) -> None:
    doc = json.loads((saved / "ids.json").read_text())
    doc["ids"], doc["int_ids"] = doc["ids"][:5], doc["int_ids"][:5]
    (saved / "ids.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"holds 10 vectors .* describe 5 vectors"):
        FaissIndex.load(saved)


def test_load_rejects_unknown_format(saved: Path) -> None:
    meta = json.loads((saved / "meta.json").read_text())
    meta["version"] = 99
    (saved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="version 99"):
        FaissIndex.load(saved)


def clustered_vectors(n: int, seed: int = 7) -> np.ndarray:
    """Unit vectors around 40 topics, like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    vectors = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_at(index: FaissIndex, vectors: np.ndarray, k: int, seed: int) -> float:
    """Recall@k of `index` for 50 stored vectors as queries, each one's own hit left out."""
    ids = ids_for(len(vectors))
    rows = np.random.default_rng(seed).choice(len(vectors), 50, replace=False)
    found = index.search(vectors[rows], k + 1)
    return float(
        np.mean(
            [
                len({h[0] for h in hits} & set(brute_force(vectors, ids, vectors[row], k + 1)))
                / (k + 1)
                for hits, row in zip(found, rows, strict=True)
            ]
        )
    )


def test_set_nprobe_trades_recall_for_speed_and_survives_save(tmp_path: Path) -> None:
    vectors = clustered_vectors(4000)
    index = build_index(ids_for(4000), vectors, exact_threshold=1000, use_gpu=False)
    automatic = recall_at(index, vectors, 20, seed=3)
    lists = index.ivf_lists
    assert lists is not None and 1 < lists["nprobe"] < lists["nlist"]
    index.set_nprobe(1)
    assert recall_at(index, vectors, 20, seed=3) < automatic
    assert index.ivf_lists == {"nlist": lists["nlist"], "nprobe": 1}
    index.set_nprobe(10_000)  # capped at the number of lists: exhaustive
    assert recall_at(index, vectors, 20, seed=3) == 1.0
    index.save(tmp_path / "ix")
    assert FaissIndex.load(tmp_path / "ix", use_gpu=False).nprobe == 10_000
    index.set_nprobe(None)
    assert index.ivf_lists == lists
    assert FaissIndex(DIM).ivf_lists is None
    with pytest.raises(ConfigError, match="nprobe must be a positive int or None"):
        index.set_nprobe(0)


def test_automatic_nprobe_is_calibrated_on_the_data_and_saved(tmp_path: Path) -> None:
    clustered = clustered_vectors(4000)
    structureless = unit_vectors(4000, seed=5)
    easy = build_index(ids_for(4000), clustered, exact_threshold=1000, use_gpu=False)
    hard = build_index(ids_for(4000), structureless, exact_threshold=1000, use_gpu=False)
    # the same number of lists, but clustered data needs far fewer of them for the same recall
    assert easy.ivf_lists["nlist"] == hard.ivf_lists["nlist"]
    assert easy.ivf_lists["nprobe"] < hard.ivf_lists["nprobe"]
    assert recall_at(easy, clustered, 100, seed=11) >= 0.95
    assert recall_at(hard, structureless, 100, seed=11) >= 0.95
    easy.save(tmp_path)
    assert FaissIndex.load(tmp_path, use_gpu=False).ivf_lists == easy.ivf_lists


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["exact", "ivf"])
def test_nbytes_matches_the_saved_index(tmp_path: Path, threshold: int) -> None:
    index = build_index(ids_for(2000), unit_vectors(2000), exact_threshold=threshold, use_gpu=False)
    index.save(tmp_path)
    saved = (tmp_path / "index.faiss").stat().st_size
    assert 0.9 * saved <= index.nbytes <= 1.1 * saved
