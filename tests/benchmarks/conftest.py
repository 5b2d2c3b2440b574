"""Fixtures of the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS


@pytest.fixture
def shipped_recs_data(tmp_path: Path) -> Path:
    """A `--data` folder of the recommendation benches holding the shipped catalog and events."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.csv").symlink_to(DEFAULT_ITEMS)
    (data / "interactions.csv").symlink_to(DEFAULT_EVENTS)
    return data
