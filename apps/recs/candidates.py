"""Interaction statistics (popularity, trending, co-occurrence) and candidate generation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import count, repeat
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from scipy import sparse

from threefold.apps.recs.events import Event

T = TypeVar("T")
DAY = 86_400.0
DEFAULT_TRENDING_WINDOW = 14 * DAY
COOCCURRENCE_BLOCK = 50_000  # items per sparse product (bounds how long one holds the GIL)
DENSE_COOCCURRENCE_ITEMS = 4_096  # up to here the table is also kept dense (at most 64 MiB)
STATS_FACTS = "statistics.json"  # what `InteractionStats.save_arrays` writes beside the arrays
TORCH_TOP_FROM = 100_000  # scores from this many items take torch.topk in `top_positions`


class InteractionStats:
    """Counts from an event log over a fixed item vocabulary (positions = `item_ids` order).

    Co-occurrence is item-to-item cosine over the binary user x item matrix (item-kNN), kept as
    the `neighbours` strongest per item (None keeps all). Trending counts interactions in a time
    window ending at a given moment, so offline evaluation can ask "what was trending then".
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        events: Sequence[Event],
        *,
        neighbours: int | None = 200,
        trending_window: float = DEFAULT_TRENDING_WINDOW,
    ) -> None:
        self.item_ids = list(item_ids)
        self.trending_window = float(trending_window)
        self.neighbours = neighbours
        n = len(self.item_ids)
        # C-level passes (map, zip, fromiter, numpy) instead of Python loops over the catalog
        # and the log, a slice at a time (`sliced`): a rebuild runs in a thread beside
        # requests, and neither seconds of bytecode nor one long C call may keep the
        # interpreter lock from them (at 1M items requests took up to 1.2 s during a rebuild)
        self.position = index_of(self.item_ids)
        item_of, user_of, time_of = (attrgetter(a) for a in ("item_id", "user_id", "timestamp"))
        positions = array_of(
            events, lambda part: map(self.position.get, map(item_of, part), repeat(-1)), np.int64
        )
        stamps = array_of(events, lambda part: map(time_of, part), np.float64)
        first_seen: dict[str, int] = {}  # user id -> the index of the user's first event
        codes = count()
        users = array_of(
            events, lambda part: map(first_seen.setdefault, map(user_of, part), codes), np.int64
        )
        known = positions >= 0
        # every known event's item position and time, as two flat arrays (no list per item:
        # at 1M items those were a million objects for the garbage collector to walk)
        self._positions, self._stamps = positions[known], stamps[known]
        self.latest_timestamp = float(self._stamps.max()) if known.any() else 0.0
        self.event_count = len(self._positions)
        rows = np.unique(users[known], return_inverse=True)[1].reshape(-1)
        pairs = np.unique(rows * max(n, 1) + self._positions)  # distinct (user, item) pairs
        pair_users, pair_items = np.divmod(pairs, max(n, 1))
        self.counts = np.bincount(pair_items, minlength=n).astype(np.float32)
        user_count = int(pair_users[-1]) + 1 if len(pairs) else 0
        self._similarity = _cooccurrence_table(
            pair_users, pair_items, user_count, self.counts, n, neighbours
        )
        self._trending_now: np.ndarray | None = None
        # small catalogs also keep it dense: a request's lookups are then one matrix product
        self._dense = self._similarity.toarray() if 0 < n <= DENSE_COOCCURRENCE_ITEMS else None

    def __len__(self) -> int:
        return len(self.item_ids)

    def save_arrays(self, folder: str | Path) -> None:
        """Write the counted arrays (not the item ids) as .npy files and a JSON of the rest."""
        folder = Path(folder)
        table = self._similarity
        arrays = {
            "positions": self._positions,
            "stamps": self._stamps,
            "counts": self.counts,
            "similarity_data": table.data,
            "similarity_indices": table.indices,
            "similarity_indptr": table.indptr,
        }
        for name, values in arrays.items():
            np.save(folder / f"{name}.npy", values)
        facts = {
            "items": len(self.item_ids),
            "trending_window": self.trending_window,
            "neighbours": self.neighbours,
            "latest_timestamp": self.latest_timestamp,
        }
        (folder / STATS_FACTS).write_text(json.dumps(facts), encoding="utf-8")

    @classmethod
    def load_arrays(
        cls,
        folder: str | Path,
        item_ids: Sequence[str],
        position: dict[str, int] | None = None,
    ) -> InteractionStats:
        """The statistics `save_arrays` wrote for these `item_ids` (arrays memory-mapped)."""
        folder = Path(folder)
        facts = json.loads((folder / STATS_FACTS).read_text(encoding="utf-8"))
        if facts["items"] != len(item_ids):
            raise ValueError(f"statistics of {facts['items']} items, not {len(item_ids)}")

        def read(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        stats = cls.__new__(cls)
        n = len(item_ids)
        stats.item_ids = item_ids if isinstance(item_ids, list) else list(item_ids)
        stats.position = index_of(stats.item_ids) if position is None else position
        stats.trending_window = float(facts["trending_window"])
        stats.neighbours = facts["neighbours"]
        stats.latest_timestamp = float(facts["latest_timestamp"])
        stats._positions, stats._stamps, stats.counts = (
            read(name) for name in ("positions", "stamps", "counts")
        )
        stats.event_count = len(stats._positions)
        stats._similarity = sparse.csr_matrix(
            (read("similarity_data"), read("similarity_indices"), read("similarity_indptr")),
            shape=(n, n),
            copy=False,
        )
        stats._similarity.has_sorted_indices = True
        stats._trending_now = None
        stats._dense = stats._similarity.toarray() if 0 < n <= DENSE_COOCCURRENCE_ITEMS else None
        return stats

    def popularity(self) -> np.ndarray:
        """log(1 + users who interacted), scaled to [0, 1]."""
        return _log_scale(self.counts)

    def trending_at(self, moments: np.ndarray) -> np.ndarray:
        """(len(moments), n_items): log-scaled interactions in the window ending at each moment."""
        moments = np.asarray(moments, dtype=np.float64).reshape(-1)
        n = len(self.item_ids)
        counts = np.zeros((len(moments), n), dtype=np.float32)
        for row, moment in enumerate(moments):
            inside = (self._stamps > moment - self.trending_window) & (self._stamps <= moment)
            counts[row] = np.bincount(self._positions[inside], minlength=n)
        return np.stack([_log_scale(row) for row in counts]) if len(moments) else counts

    def trending(self) -> np.ndarray:
        """Trending as of the newest event in the log (cached)."""
        if self._trending_now is None:
            self._trending_now = self.trending_at(np.array([self.latest_timestamp]))[0]
        return self._trending_now

    def cooccurrence(self, positions: Sequence[int], weights: Sequence[float]) -> np.ndarray:
        """Sum over history items of weight x cosine(item, candidate), for every item."""
        n = len(self.item_ids)
        pairs = [(p, w) for p, w in zip(positions, weights, strict=True) if 0 <= p < n]
        if not pairs:
            return np.zeros(n, dtype=np.float32)
        rows = np.array([p for p, _ in pairs])
        row_weights = np.array([w for _, w in pairs], dtype=np.float32)
        if self._dense is not None:
            return row_weights @ self._dense[rows]
        return np.asarray(self._similarity[rows].T @ row_weights, dtype=np.float32)

    def pair_similarity(self, first: int, second: int) -> float:
        """Co-occurrence cosine of two items (0 when not among each other's neighbours)."""
        if not (0 <= first < len(self.item_ids) and 0 <= second < len(self.item_ids)):
            return 0.0
        if self._dense is not None:
            return float(self._dense[first, second])
        columns, values = self._row(first)
        hit = np.searchsorted(columns, second)
        return float(values[hit]) if hit < len(columns) and columns[hit] == second else 0.0

    def similar(self, position: int, n: int) -> list[tuple[int, float]]:
        """The items most often seen together with `position` (best first)."""
        if not 0 <= position < len(self.item_ids):
            return []
        columns, values = self._row(position)
        order = np.lexsort((columns, -values))  # strongest first, ties by position
        return [(int(columns[i]), float(values[i])) for i in order[:n] if values[i] > 0]

    def _row(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The kept neighbours of one item: (positions in ascending order, cosines)."""
        table = self._similarity
        start, end = table.indptr[position], table.indptr[position + 1]
        return table.indices[start:end], table.data[start:end]


GIL_SLICE = 2_000
"""Elements per C-level pass of a statistics rebuild (see `sliced`), about 1 ms each. A request
thread beside the rebuild waits up to one pass each time it takes the interpreter lock back; at
1M items (requests back to back during a rebuild, in process) slices of 50,000 left one request
at 1.1 s, 10,000 at 0.8 s, 2,000 at 0.15-0.19 s (the rebuild 8.7 s instead of 6.4 s), 500 at
0.15 s (the rebuild 13.5 s)."""


def sliced(values: Sequence[T], step: int | None = None) -> Iterator[tuple[int, Sequence[T]]]:
    """(start, slice) pairs over `values`, letting other threads take the interpreter lock
    between slices: a C-level pass over a million items holds it for ~0.3 s otherwise."""
    step = step or GIL_SLICE
    for start in range(0, len(values), step):
        if start:
            time.sleep(0)
        yield start, values[start : start + step]


def keyed(keys: Sequence[str], values: Sequence[T]) -> dict[str, T]:
    """key -> value of two aligned sequences, built a slice at a time."""
    out: dict[str, T] = {}
    for start, part in sliced(keys):
        out.update(zip(part, values[start : start + len(part)], strict=True))
    return out


def index_of(ids: Sequence[str]) -> dict[str, int]:
    """id -> position, built a slice at a time."""
    return keyed(ids, range(len(ids)))


def attribute_of(records: Sequence[Any], name: str) -> list[Any]:
    """`record.<name>` of every record, read a slice at a time."""
    out: list[Any] = []
    for _, part in sliced(records):
        out.extend(map(attrgetter(name), part))
    return out


def lookup(positions: Mapping[str, int], ids: Sequence[str]) -> np.ndarray:
    """Position of each id (-1 for unknown ones), a slice at a time."""
    return array_of(ids, lambda part: map(positions.get, part, repeat(-1)), np.int64)


def array_of(
    values: Sequence[T], read: Callable[[Sequence[T]], Iterable[Any]], dtype: Any
) -> np.ndarray:
    """`np.fromiter(read(part), dtype)` over `values` a slice at a time, concatenated."""
    parts = [np.fromiter(read(part), dtype) for _, part in sliced(values)]
    return np.concatenate([np.zeros(0, dtype=dtype), *parts])


def _log_scale(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if len(values) else 0.0
    if top <= 0:
        return np.zeros_like(values, dtype=np.float32)
    return (np.log1p(values) / np.log1p(top)).astype(np.float32)


def _cooccurrence_table(
    rows: np.ndarray,
    columns: np.ndarray,
    users: int,
    counts: np.ndarray,
    n: int,
    neighbours: int | None,
) -> sparse.csr_matrix:
    """Top-`neighbours` cosine similarities per item (None: all) from the binary user x item
    matrix (its distinct (user row, item column) pairs), as an (n, n) CSR matrix with sorted
    column indices.

    Sparse throughout: memory grows with the pairs of items seen together, never with n², so a
    model that keeps all neighbours serves a large catalog too.
    """
    empty = sparse.csr_matrix((n, n), dtype=np.float32)
    if n == 0 or neighbours == 0 or not users:
        return empty
    matrix = sparse.csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (rows, columns)), shape=(users, n)
    )
    # the product in blocks of items: scipy holds the GIL for a whole product, and a rebuild
    # running beside requests (a background thread at 1M items) must not stall them for seconds
    by_item = matrix.T.tocsr()
    parts = []
    for start in range(0, n, COOCCURRENCE_BLOCK):
        block = (by_item[start : start + COOCCURRENCE_BLOCK] @ matrix).tocoo()
        parts.append((block.row + start, block.col, block.data))
    row, col, data = (np.concatenate(values) for values in zip(*parts, strict=True))
    off_diagonal = row != col
    first, second = row[off_diagonal], col[off_diagonal]
    norms = np.sqrt(np.maximum(counts, 1.0))
    cosine = (data[off_diagonal] / norms[first] / norms[second]).astype(np.float32)
    if neighbours is not None:  # keep each item's `neighbours` strongest
        order = np.lexsort((second, -cosine, first))
        first, second, cosine = first[order], second[order], cosine[order]
        rank = np.arange(len(first)) - np.searchsorted(first, np.arange(n))[first]
        keep = rank < neighbours
        first, second, cosine = first[keep], second[keep], cosine[keep]
    table = sparse.csr_matrix((cosine, (first, second)), shape=(n, n), dtype=np.float32)
    table.sort_indices()
    return table


def top_positions(scores: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of the `n` highest scores (best first), restricted to `allowed` when given."""
    values = scores if allowed is None else np.where(allowed, scores, -np.inf)
    n = min(n, int(np.isfinite(values).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(values) >= TORCH_TOP_FROM:  # 5x faster than argpartition at a million items
        import torch

        top = torch.topk(torch.from_numpy(np.ascontiguousarray(values)), n).indices.numpy()
    else:
        top = np.argpartition(-values, n - 1)[:n]
    return top[np.argsort(-values[top], kind="stable")]


def descending(scores: np.ndarray) -> np.ndarray:
    """All positions, highest score first: computed once, then `first_allowed` is cheap."""
    return np.argsort(-scores, kind="stable")


def first_allowed(order: np.ndarray, n: int, allowed: np.ndarray) -> np.ndarray:
    """The first `n` allowed positions of `order`; reads a few times n, not the whole catalog."""
    window = 4 * n + 64
    while True:
        head = order[:window]
        kept = head[allowed[head]]
        if len(kept) >= n or window >= len(order):
            return kept[:n]
        window *= 4


def pool_tiers(base: int, wanted: int) -> list[int]:
    """`base`, 2·`base`, 4·`base`, ... up to the first at least `wanted`.

    A page ranks its candidates tier by tier (`tiered_candidates`, `rules.rank_by_tier`), so a
    deeper page, which needs a bigger pool, never reorders or repeats a shallower one.
    """
    tiers = [base]
    while tiers[-1] < wanted:
        tiers.append(tiers[-1] * 2)
    return tiers


def tiered_candidates(
    generate: Callable[[int], np.ndarray],
    tiers: Sequence[int],
    *,
    at_least: int = 0,
    largest: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The union of `generate(pool)` over `tiers`, in tier order, and each candidate's first
    tier (its index among the pools).

    While the union holds fewer than `at_least` candidates, one more pool, twice the last, is
    added as long as the last is under `largest` and each added pool brings new candidates.
    """
    first: dict[int, int] = {}
    pools = list(tiers)
    for tier, pool in enumerate(pools):  # `pools` may grow while iterated
        before = len(first)
        for position in generate(pool).tolist():
            first.setdefault(position, tier)
        # an added pool that brought nothing: every allowed item is in (e.g. a narrow category)
        in_vain = tier >= len(tiers) and len(first) == before
        if tier == len(pools) - 1 and len(first) < at_least and pool < largest and not in_vain:
            pools.append(2 * pool)
    return (
        np.fromiter(first.keys(), dtype=np.int64, count=len(first)),
        np.fromiter(first.values(), dtype=np.int64, count=len(first)),
    )


def generate_candidates(
    *,
    allowed: np.ndarray,
    pool: int,
    popularity: np.ndarray,
    trending: np.ndarray,
    neighbour_positions: Sequence[int] = (),
    cooccurrence: np.ndarray | None = None,
    sequence: np.ndarray | None = None,
    popularity_order: np.ndarray | None = None,
    trending_order: np.ndarray | None = None,
) -> np.ndarray:
    """Union of the profile's FAISS neighbours, co-occurring items, the sequence ranker's best
    next items (new ones included: it reads their text), and popular/trending ones.

    A cold user (no neighbours, no co-occurrence) gets popular and trending items only.
    `allowed` masks out removed, filtered or already-seen items. The `*_order` arguments
    (`descending` of the scores, kept between requests) spare a pass over every item.
    """
    chosen: list[int] = [p for p in neighbour_positions if 0 <= p < len(allowed) and allowed[p]]
    if cooccurrence is not None:
        linked = np.flatnonzero(cooccurrence > 0)
        linked = linked[allowed[linked]]
        chosen.extend(linked[top_positions(cooccurrence[linked], pool // 2)].tolist())
    share = max(pool // 4, 10)
    if sequence is not None:
        chosen.extend(top_positions(sequence, share, allowed).tolist())
    for scores, order in ((trending, trending_order), (popularity, popularity_order)):
        top = top_positions(scores, share, allowed) if order is None else None
        chosen.extend((first_allowed(order, share, allowed) if top is None else top).tolist())
    unique = list(dict.fromkeys(chosen))
    return np.asarray(unique, dtype=np.int64)
