"""Business rules: exclusions, MMR, paging and cursors."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.apps.recs.rules import (
    allowed_items,
    decode_cursor,
    encode_cursor,
    mmr,
    paginate,
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


def test_paging_and_cursors():
    page = paginate(list(range(7)), offset=3, k=3)
    assert page.positions == [3, 4, 5]
    assert decode_cursor(page.next_cursor) == 6
    assert paginate(list(range(7)), offset=6, k=3).next_offset is None
    assert decode_cursor(encode_cursor(0)) == 0
    with pytest.raises(ConfigError, match="pass next_cursor as is"):
        decode_cursor("garbage!")
