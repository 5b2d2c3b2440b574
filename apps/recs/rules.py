"""Business rules applied after scoring: exclusions, category filter, a slot for a new item, MMR
diversity, paging."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from threefold.apps.recs.catalog import Item
from threefold.core.errors import ConfigError

CURSOR_PREFIX = "o:"
# a snapshot's cursor: "s:<snapshot id>:<offset>" (`new_snapshot_id` makes the ids)
SNAPSHOT_CURSOR = re.compile(r"s:([A-Za-z0-9_-]{16}):([0-9]+)")


def category_mask(items: Sequence[Item], category: str | None) -> np.ndarray:
    """True for items in `category` (case-insensitive, any of an item's categories)."""
    if not category:
        return np.ones(len(items), dtype=bool)
    return np.array([item.in_category(category) for item in items], dtype=bool)


def allowed_items(
    active: np.ndarray,
    *,
    seen: Sequence[int] = (),
    purchased: Sequence[int] = (),
    exclude_seen: bool = True,
    category: np.ndarray | None = None,
) -> np.ndarray:
    """Which items may be recommended: active, in the category, and not already consumed.

    Purchased items are always excluded; viewed/clicked ones only when `exclude_seen`.
    """
    mask = active.copy()
    if category is not None:
        mask &= category
    mask[list(purchased)] = False
    if exclude_seen:
        mask[list(seen)] = False
    return mask


def new_item_slot(
    scores: np.ndarray, new: np.ndarray, preference: np.ndarray, k: int
) -> np.ndarray:
    """`scores` (one row per user, or one list) where the best new item takes the k-th place.

    A new item (no interactions yet: `new`) has zero behavioural features, so the combiner
    ranks it below every known item; `preference` (the sequence ranker's score, which reads its
    text) is what can rank it. Unless a new item is already in the first `k`, the best one by
    `preference` gets a score just above the k-th item's, so it enters at place k and the
    others keep their order. Items to leave out must already score -inf (never promoted).
    """
    out = np.array(scores, dtype=np.float64, copy=True)
    rows = out.reshape(-1, out.shape[-1])  # a view: writing a row writes `out`
    is_new = np.broadcast_to(new, rows.shape)
    liked = np.where(is_new & np.isfinite(rows), preference.reshape(rows.shape), -np.inf)
    for values, fresh, wanted in zip(rows, is_new, liked, strict=True):
        if k < 1 or np.isfinite(values).sum() <= k or not np.isfinite(wanted).any():
            continue
        top = np.argpartition(-values, k - 1)[:k]
        if fresh[top].any():
            continue
        values[int(np.argmax(wanted))] = np.nextafter(values[top].min(), np.inf)
    return out


def mmr(
    candidates: np.ndarray,
    relevance: np.ndarray,
    vectors: np.ndarray,
    *,
    k: int,
    diversity: float,
) -> list[int]:
    """Maximal marginal relevance: greedily pick (1-d)*relevance - d*max similarity to picks.

    `relevance` is aligned with `candidates` and rescaled to [0, 1]; `diversity=0` keeps the
    relevance order, 1 ignores relevance after the first pick (the most relevant item). Ties go
    to the more relevant item.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ConfigError(f"diversity must be within [0, 1], found {diversity!r}")
    order = np.argsort(-relevance, kind="stable")
    if diversity == 0.0 or len(candidates) <= 1:
        return [int(candidates[i]) for i in order[:k]]
    # best first, so that argmax (the first maximum) breaks ties by relevance
    candidates, relevance = np.asarray(candidates)[order], np.asarray(relevance)[order]
    low, high = float(relevance.min()), float(relevance.max())
    scaled = (relevance - low) / (high - low) if high > low else np.ones_like(relevance)
    chosen_vectors = vectors[candidates]
    picked: list[int] = []
    max_similarity = np.full(len(candidates), -1.0, dtype=np.float32)
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        redundancy = np.where(max_similarity < -0.5, 0.0, max_similarity)
        value = (1.0 - diversity) * scaled - diversity * redundancy
        value[~available] = -np.inf
        best = int(np.argmax(value))
        picked.append(best)
        available[best] = False
        max_similarity = np.maximum(max_similarity, chosen_vectors @ chosen_vectors[best])
    return [int(candidates[i]) for i in picked]


@dataclass(frozen=True)
class Page:
    """One page of a ranked list."""

    positions: list[int]
    offset: int
    next_offset: int | None

    @property
    def next_cursor(self) -> str | None:
        return encode_cursor(self.next_offset) if self.next_offset is not None else None


def rank_by_tier(
    candidates: np.ndarray,
    relevance: np.ndarray,
    tiers: np.ndarray,
    vectors: np.ndarray,
    *,
    k: int,
    diversity: float,
) -> list[int]:
    """`mmr` within each candidate tier (`candidates.tiered_candidates`), tiers in order, until
    `k` are ranked: a bigger pool adds items after the ones a smaller pool ranked."""
    ranked: list[int] = []
    for tier in np.unique(tiers):
        if len(ranked) >= k:
            break
        rows = np.flatnonzero(tiers == tier)
        ranked += mmr(
            candidates[rows], relevance[rows], vectors, k=k - len(ranked), diversity=diversity
        )
    return ranked


def paginate(ranked: Sequence[int], *, offset: int, k: int) -> Page:
    """Slice `k` results from `offset`; `next_offset` is None on the last page."""
    if offset < 0 or k <= 0:
        raise ConfigError(f"offset must be >= 0 and k > 0, found offset={offset}, k={k}")
    page = list(ranked[offset : offset + k])
    following = offset + k
    return Page(page, offset, following if following < len(ranked) else None)


@dataclass(frozen=True)
class Cursor:
    """What a `next_cursor` names: the next page's offset, in a snapshot's list when it has
    one (`snapshot`: its id), else in a list ranked anew."""

    offset: int
    snapshot: str | None = None


def encode_cursor(offset: int, snapshot: str | None = None) -> str:
    """The next page's `offset` (in the list `snapshot` keeps, if given), opaque to clients."""
    text = f"s:{snapshot}:{offset}" if snapshot else f"{CURSOR_PREFIX}{offset}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_cursor(cursor: str) -> Cursor:
    """A cursor from a previous page; ConfigError when it is not one (only `encode_cursor`'s
    forms: ASCII digits, no sign, spaces, '_' or other scripts' digits)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        digits = text.removeprefix(CURSOR_PREFIX)
        if text.startswith(CURSOR_PREFIX) and digits.isascii() and digits.isdigit():
            return Cursor(int(digits))
        if found := SNAPSHOT_CURSOR.fullmatch(text):
            return Cursor(int(found[2]), found[1])
    except (ValueError, UnicodeDecodeError):
        pass
    raise ConfigError(f"cursor {cursor!r} is not one this API returned; pass next_cursor as is")


def decode_cursor(cursor: str) -> int:
    """The offset inside a cursor from a previous page (`read_cursor`)."""
    return read_cursor(cursor).offset
