"""Vector index with string ids: exact FAISS search for small collections, IVF above a threshold.

Scores are inner products, so callers pass L2-normalized vectors (as `Embedder.encode` returns)
to get cosine similarity.

Design:
- The CPU index is the source of truth. Below `exact_threshold` vectors it is an
  `IndexIDMap2(IndexFlatIP)`; at or above it an `IndexIVFFlat` (inner product) with
  `nlist ~ sqrt(n)` lists, k-means trained on at most `TRAIN_POINTS_PER_LIST` vectors per list,
  ids stored natively and a hashtable direct map so vectors can be reconstructed and removed.
  Training and assigning cost n x nlist x dimension: 4*sqrt(n) lists trained on every vector
  took 40 s for 100k x 384 on 2 busy cores, so ~20 min for 1M; for the sqrt(n) build time see
  bench/results/recs_scale.json. IVF was chosen over HNSW because FAISS's HNSW cannot remove
  vectors. `nprobe` defaults to the fewest lists (8, 16, 32, ... up to all) that find
  `CALIBRATION_RECALL` of the exact top `CALIBRATION_K` for `CALIBRATION_QUERIES` of the stored
  vectors, measured at each IVF build and saved with the index: clustered data (real
  embeddings) gets a few lists, structureless data many, so recall holds on both;
  `set_nprobe` overrides it.
- The index is rebuilt when it crosses the threshold upwards, when an IVF index has grown to
  4x the size it was trained on (so `nlist` stays near `sqrt(n)`), and back to exact when it
  shrinks below half the threshold.
- String ids map to stable int64 ids (re-adding an id replaces its vector and keeps its int id).
- GPU: when faiss-gpu and a GPU are present (or `use_gpu=True`), searches run on a GPU copy of
  the CPU index, refreshed after each change; saving always writes the CPU index.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threefold.core.device import faiss_gpu_available
from threefold.core.errors import ConfigError, ModelError, first_line
from threefold.core.files import read_json, write_json_atomic

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
META_FILE = "meta.json"
FORMAT_NAME = "threefold-faiss-index"
FORMAT_VERSION = 1
GPU_INSTALL_HINT = (
    "Fix: install the GPU build with `pip install threefold[gpu]` (faiss-gpu, needs CUDA), "
    "or pass use_gpu=False / leave it unset to use the CPU."
)
# faiss GPU indexes answer at most this many neighbours per query; larger k searches on the CPU.
GPU_MAX_K = 2048
# k-means for the IVF lists samples at most this many vectors per list (FAISS needs >= 39).
TRAIN_POINTS_PER_LIST = 64
# the automatic nprobe: see the module docstring
CALIBRATION_QUERIES = 256
CALIBRATION_K = 100
CALIBRATION_RECALL = 0.98
MIN_NPROBE = 8


def _faiss() -> Any:
    import faiss

    return faiss


class FaissIndex:
    """FAISS inner-product index with string ids; exact below `exact_threshold`, IVF above."""

    def __init__(
        self,
        dimension: int,
        *,
        exact_threshold: int = 20_000,
        use_gpu: bool | None = None,
        nprobe: int | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"index dimension must be a positive int; got {dimension!r}.")
        if isinstance(exact_threshold, bool) or not isinstance(exact_threshold, int):
            raise ConfigError(f"exact_threshold must be an int; got {exact_threshold!r}.")
        if exact_threshold < 2:
            raise ConfigError(
                f"exact_threshold must be at least 2 (an IVF index needs vectors to train on); "
                f"got {exact_threshold}."
            )
        _check_nprobe(nprobe)
        self.dimension = dimension
        self.exact_threshold = exact_threshold
        self.nprobe = nprobe
        self.use_gpu = _resolve_gpu(use_gpu)
        self._lock = threading.RLock()
        self._str_to_int: dict[str, int] = {}
        self._int_to_str: dict[int, str] = {}
        self._next_id = 0
        self._trained_on = 0
        self._calibrated_nprobe: int | None = None
        self._index: faiss.Index = self._new_exact()
        self._kind = "exact"
        self._gpu_resources: Any = None
        self._gpu_index: Any = None

    # ----------------------------------------------------------------- introspection
    @property
    def kind(self) -> str:
        """ "exact" (IndexFlatIP) or "ivf" (IndexIVFFlat)."""
        return self._kind

    @property
    def nbytes(self) -> int:
        """Bytes of the FAISS index: vectors and int64 ids (+ IVF centroids and direct map)."""
        with self._lock:
            n = len(self._str_to_int)
            size = n * (self.dimension * 4 + 8)
            if self._kind == "ivf":
                nlist = _faiss().extract_index_ivf(self._index).nlist
                size += nlist * self.dimension * 4 + n * 16  # centroids; id -> (list, offset)
            return size

    @property
    def ivf_lists(self) -> dict[str, int] | None:
        """{"nlist": lists, "nprobe": lists scanned per query} of an IVF index, else None."""
        with self._lock:
            if self._kind != "ivf":
                return None
            ivf = _faiss().extract_index_ivf(self._index)
            return {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}

    def set_nprobe(self, nprobe: int | None) -> None:
        """Lists an IVF index scans per query (None: automatic); more is slower and more exact."""
        _check_nprobe(nprobe)
        with self._lock:
            self.nprobe = nprobe
            if self._kind == "ivf":
                ivf = _faiss().extract_index_ivf(self._index)
                ivf.nprobe = self._auto_nprobe(ivf.nlist)
                self._gpu_index = None

    @property
    def ids(self) -> list[str]:
        """External ids in insertion order (re-added ids keep their first position)."""
        with self._lock:
            return [self._int_to_str[i] for i in sorted(self._int_to_str)]

    def __len__(self) -> int:
        return len(self._str_to_int)

    def __contains__(self, id: object) -> bool:
        return id in self._str_to_int

    def __repr__(self) -> str:
        return (
            f"FaissIndex(dimension={self.dimension}, n={len(self)}, kind={self._kind!r}, "
            f"gpu={self.use_gpu})"
        )

    # --------------------------------------------------------------------- mutation
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors under string ids; an id already present gets its vector replaced."""
        ids = _check_ids(ids)
        matrix = self._check_matrix(vectors, what="vectors")
        if len(ids) != matrix.shape[0]:
            raise ConfigError(
                f"add() got {len(ids)} ids but {matrix.shape[0]} vectors; pass one id per row."
            )
        if not ids:
            return
        # Within one call the last occurrence of a duplicated id wins.
        last = {id_: row for row, id_ in enumerate(ids)}
        if len(last) != len(ids):
            rows = sorted(last.values())
            ids = [ids[r] for r in rows]
            matrix = matrix[rows]
        with self._lock:
            replaced = [self._str_to_int[i] for i in ids if i in self._str_to_int]
            if replaced:
                self._remove_int_ids(replaced)
            int_ids = np.empty(len(ids), dtype=np.int64)
            for row, id_ in enumerate(ids):
                if id_ not in self._str_to_int:
                    self._str_to_int[id_] = self._next_id
                    self._int_to_str[self._next_id] = id_
                    self._next_id += 1
                int_ids[row] = self._str_to_int[id_]
            self._index.add_with_ids(matrix, int_ids)
            self._gpu_index = None
            self._maybe_rebuild()

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        ids = _check_ids(ids)
        with self._lock:
            present = sorted({self._str_to_int[i] for i in ids if i in self._str_to_int})
            if not present:
                return 0
            removed = self._remove_int_ids(present)
            if removed != len(present):
                raise ModelError(
                    f"faiss removed {removed} vectors but {len(present)} were expected; "
                    "the index is inconsistent. Fix: rebuild it from the source data."
                )
            for int_id in present:
                del self._str_to_int[self._int_to_str.pop(int_id)]
            self._gpu_index = None
            self._maybe_rebuild()
            return len(present)

    # ----------------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-k neighbours by inner product for each query, best first.

        `queries` is (m, dimension) or a single (dimension,) vector (then one list is returned
        inside the outer list). k is capped at the index size; an empty index gives empty lists.
        An IVF index may return fewer than k hits when the probed lists hold fewer vectors.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive int; got {k!r}.")
        matrix = self._check_matrix(queries, what="queries")
        with self._lock:
            n = len(self._str_to_int)
            if n == 0 or matrix.shape[0] == 0:
                return [[] for _ in range(matrix.shape[0])]
            k = min(int(k), n)
            index = self._search_index(k)
            scores, found = index.search(matrix, k)
            int_to_str = self._int_to_str
            return [
                [
                    (int_to_str[int(i)], float(s))
                    for i, s in zip(row_ids, row_scores, strict=True)
                    if i >= 0 and int(i) in int_to_str
                ]
                for row_ids, row_scores in zip(found, scores, strict=True)
            ]

    def get_vector(self, id: str) -> np.ndarray:
        """The stored vector for `id` (float32, shape (dimension,)); KeyError when absent."""
        with self._lock:
            if id not in self._str_to_int:
                raise KeyError(f"id {id!r} is not in the index ({len(self)} ids)")
            return np.asarray(self._index.reconstruct(self._str_to_int[id]), dtype=np.float32)

    # -------------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> None:
        """Write the index to a directory: index.faiss, ids.json, meta.json (CPU index)."""
        faiss = _faiss()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            int_ids = sorted(self._int_to_str)
            ids_doc = {
                "ids": [self._int_to_str[i] for i in int_ids],
                "int_ids": int_ids,
                "next_id": self._next_id,
            }
            meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "dimension": self.dimension,
                "kind": self._kind,
                "exact_threshold": self.exact_threshold,
                "nprobe": self.nprobe,
                "trained_on": self._trained_on,
                "calibrated_nprobe": self._calibrated_nprobe,
                "count": len(int_ids),
            }
            tmp_index = folder / f".{INDEX_FILE}.tmp"
            faiss.write_index(self._index, str(tmp_index))
            os.replace(tmp_index, folder / INDEX_FILE)
            write_json_atomic(folder / IDS_FILE, ids_doc)
            write_json_atomic(folder / META_FILE, meta)
        logger.info("saved %s index with %d vectors to %s", self._kind, len(int_ids), folder)

    @classmethod
    def load(cls, path: str | Path, *, use_gpu: bool | None = None) -> FaissIndex:
        """Load an index written by `save`; ModelError names the missing or corrupt file."""
        faiss = _faiss()
        folder = Path(path)
        if not folder.is_dir():
            raise ModelError(
                f"index directory {str(folder)!r} does not exist. Fix: build the index and "
                "save it there first (FaissIndex.save / build_index)."
            )
        missing = [f for f in (INDEX_FILE, IDS_FILE, META_FILE) if not (folder / f).is_file()]
        if missing:
            raise ModelError(
                f"index directory {str(folder)!r} is missing {missing}; expected "
                f"{[INDEX_FILE, IDS_FILE, META_FILE]}. Fix: save the index again."
            )
        meta = read_json(folder / META_FILE, "the index")
        ids_doc = read_json(folder / IDS_FILE, "the index")
        try:
            if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"format {meta.get('format')!r} version {meta.get('version')!r}, expected "
                    f"{FORMAT_NAME!r} version {FORMAT_VERSION}"
                )
            dimension = int(meta["dimension"])
            kind = str(meta["kind"])
            if kind not in ("exact", "ivf"):
                raise ValueError(f"kind {kind!r}, expected 'exact' or 'ivf'")
            str_ids = [str(i) for i in ids_doc["ids"]]
            int_ids = [int(i) for i in ids_doc["int_ids"]]
            next_id = int(ids_doc["next_id"])
            if len(str_ids) != len(int_ids) or len(set(str_ids)) != len(str_ids):
                raise ValueError("ids and int_ids differ in length or ids repeat")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"index metadata in {str(folder)!r} ({META_FILE}/{IDS_FILE}) is invalid: {exc}. "
                "Fix: save the index again."
            ) from exc
        try:
            cpu_index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise ModelError(
                f"{folder / INDEX_FILE} is not a readable FAISS index ({first_line(exc)}). "
                "Fix: save the index again."
            ) from exc
        if cpu_index.d != dimension or cpu_index.ntotal != len(int_ids):
            raise ModelError(
                f"{folder / INDEX_FILE} holds {cpu_index.ntotal} vectors of dimension "
                f"{cpu_index.d} but {IDS_FILE}/{META_FILE} describe {len(int_ids)} vectors of "
                f"dimension {dimension}. Fix: save the index again."
            )
        self = cls(
            dimension,
            exact_threshold=int(meta["exact_threshold"]),
            use_gpu=use_gpu,
            nprobe=meta.get("nprobe"),
        )
        self._index = cpu_index
        self._kind = kind
        self._trained_on = int(meta.get("trained_on", 0))
        calibrated = meta.get("calibrated_nprobe")
        self._calibrated_nprobe = int(calibrated) if calibrated is not None else None
        self._str_to_int = dict(zip(str_ids, int_ids, strict=True))
        self._int_to_str = dict(zip(int_ids, str_ids, strict=True))
        self._next_id = next_id
        if kind == "ivf":
            faiss.extract_index_ivf(cpu_index).nprobe = self._auto_nprobe(cpu_index.nlist)
        logger.info("loaded %s index with %d vectors from %s", kind, len(int_ids), folder)
        return self

    # ------------------------------------------------------------------- internals
    def _check_matrix(self, array: np.ndarray, *, what: str) -> np.ndarray:
        matrix = np.asarray(array, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2:
            raise ConfigError(
                f"{what} must be a (n, {self.dimension}) array; got shape {matrix.shape}."
            )
        if matrix.shape[0] and matrix.shape[1] != self.dimension:
            raise ConfigError(
                f"{what} have dimension {matrix.shape[1]} but the index has dimension "
                f"{self.dimension}. Fix: use the same embedder for the index and the queries, "
                "or rebuild the index."
            )
        if matrix.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise ConfigError(f"{what} contain NaN or infinite values.")
        return np.ascontiguousarray(matrix)

    def _remove_int_ids(self, int_ids: list[int]) -> int:
        faiss = _faiss()
        array = np.ascontiguousarray(int_ids, dtype=np.int64)
        # An IVF hashtable direct map removes only by explicit array; a batch (hash set) is
        # faster for the flat index, which tests every stored id against the selector.
        if self._kind == "ivf":
            selector = faiss.IDSelectorArray(len(array), faiss.swig_ptr(array))
            return int(self._index.remove_ids(selector))
        return int(self._index.remove_ids(faiss.IDSelectorBatch(array)))

    def _new_exact(self) -> faiss.Index:
        faiss = _faiss()
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _auto_nprobe(self, nlist: int) -> int:
        if self.nprobe is not None:
            return min(self.nprobe, nlist)
        if self._calibrated_nprobe is not None:
            return min(self._calibrated_nprobe, nlist)
        return min(nlist, max(MIN_NPROBE, nlist // 8))  # an index saved before calibration

    def _maybe_rebuild(self) -> None:
        n = len(self._str_to_int)
        if self._kind == "exact" and n >= self.exact_threshold:
            self._rebuild("ivf")
        elif self._kind == "ivf" and n < self.exact_threshold // 2:
            self._rebuild("exact")
        elif self._kind == "ivf" and n >= 4 * max(self._trained_on, 1):
            self._rebuild("ivf")

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(int ids ascending, their vectors) in bulk (one call per vector: 3.5 s per 200k)."""
        faiss = _faiss()
        if len(self._int_to_str) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)
        if self._kind == "exact":
            flat = faiss.downcast_index(self._index.index)
            stored = faiss.vector_to_array(flat.codes).view(np.float32)
            int_ids = faiss.vector_to_array(self._index.id_map)
            order = np.argsort(int_ids, kind="stable")
            return int_ids[order], stored.reshape(len(int_ids), self.dimension)[order]
        int_ids = np.asarray(sorted(self._int_to_str), dtype=np.int64)
        return int_ids, np.asarray(self._index.reconstruct_batch(int_ids), dtype=np.float32)

    def _rebuild(self, kind: str) -> None:
        faiss = _faiss()
        int_ids, vectors = self._all_vectors()
        n = len(int_ids)
        if kind == "exact":
            index = self._new_exact()
            index.add_with_ids(vectors, int_ids)
        else:
            # ~sqrt(n) lists, but at least 39 training points per list (FAISS's minimum).
            nlist = max(1, min(int(math.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(self.dimension)
            index = faiss.IndexIVFFlat(quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
            index.train(vectors)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            index.add_with_ids(vectors, int_ids)
            self._trained_on = n
            self._calibrated_nprobe, recall = _calibrate_nprobe(index, vectors, int_ids)
            index.nprobe = self._auto_nprobe(nlist)
            logger.info(
                "built IVF index: %d vectors, nlist=%d, nprobe=%d (calibrated: recall@%d %.3f)",
                n,
                nlist,
                index.nprobe,
                CALIBRATION_K,
                recall,
            )
        self._index = index
        self._kind = kind
        self._gpu_index = None

    def _search_index(self, k: int) -> Any:
        if not self.use_gpu or k > GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            faiss = _faiss()
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
            if self._kind == "ivf":
                self._gpu_index.nprobe = faiss.extract_index_ivf(self._index).nprobe
        return self._gpu_index


def build_index(
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    exact_threshold: int = 20_000,
    use_gpu: bool | None = None,
    nprobe: int | None = None,
) -> FaissIndex:
    """Create a FaissIndex sized for `vectors` and add them under `ids`."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ConfigError(f"vectors must be a 2-D (n, dimension) array; got shape {matrix.shape}.")
    index = FaissIndex(
        matrix.shape[1], exact_threshold=exact_threshold, use_gpu=use_gpu, nprobe=nprobe
    )
    index.add(ids, matrix)
    return index


def _resolve_gpu(use_gpu: bool | None) -> bool:
    if use_gpu is None:
        return faiss_gpu_available()
    if not use_gpu:
        return False
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources"):
        raise ConfigError(
            "use_gpu=True but the installed faiss has no GPU support (faiss-cpu). "
            + GPU_INSTALL_HINT
        )
    if faiss.get_num_gpus() < 1:
        raise ConfigError("use_gpu=True but faiss sees no GPU. " + GPU_INSTALL_HINT)
    return True


def _calibrate_nprobe(index: Any, vectors: np.ndarray, int_ids: np.ndarray) -> tuple[int, float]:
    """The fewest lists (MIN_NPROBE, doubling, up to all) reaching CALIBRATION_RECALL, and its
    recall@CALIBRATION_K for a fixed sample of the stored vectors (each one's own hit left out).
    """
    faiss = _faiss()
    n, nlist = len(vectors), index.nlist
    k = min(CALIBRATION_K, n - 1)
    rows = np.random.default_rng(0).choice(n, size=min(CALIBRATION_QUERIES, n), replace=False)
    queries = np.ascontiguousarray(vectors[rows])
    _, exact = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = [
        set(int_ids[hits].tolist()) - {int(int_ids[row])}
        for hits, row in zip(exact, rows, strict=True)
    ]
    nprobe, recall = MIN_NPROBE, 0.0
    while True:
        index.nprobe = min(nprobe, nlist)
        _, found = index.search(queries, k + 1)
        recall = float(
            np.mean(
                [
                    len(t & set(f.tolist())) / max(len(t), 1)
                    for f, t in zip(found, truth, strict=True)
                ]
            )
        )
        if recall >= CALIBRATION_RECALL or nprobe >= nlist:
            return min(nprobe, nlist), recall
        nprobe *= 2


def _check_nprobe(nprobe: int | None) -> None:
    if nprobe is not None and (
        isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1
    ):
        raise ConfigError(f"nprobe must be a positive int or None (automatic); got {nprobe!r}.")


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise ConfigError(f"ids must be a sequence of strings, not a single string; got {ids!r}.")
    out = list(ids)
    for pos, id_ in enumerate(out):
        if not isinstance(id_, str):
            raise ConfigError(
                f"ids must be strings; item {pos} is {type(id_).__name__} {id_!r}. "
                "Fix: convert ids with str() before adding."
            )
    return out
