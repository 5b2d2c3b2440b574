"""LiveModel: serves the current version, follows promotions and rollbacks, survives bad loads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from threefold.core.errors import ModelError
from threefold.core.hot_swap import LiveModel
from threefold.core.registry import ModelEntry


def publish(entry: ModelEntry, text: str, *, activate: bool = True) -> str:
    return entry.publish(lambda folder, v: (folder / "m.txt").write_text(text), activate=activate)


def read(folder: Path, version: str) -> str:
    text = (folder / "m.txt").read_text()
    if text == "broken":
        raise ValueError("cannot load")
    return text


def test_follows_promotion_and_rollback(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "m")
    publish(entry, "one")
    live = LiveModel(entry, read)
    swaps: list[str] = []
    live.on_swap.append(lambda version, model: swaps.append(version))
    assert live.get() == ("v1", "one")
    assert not live.refresh()
    publish(entry, "two")
    assert live.refresh() and live.get() == ("v2", "two")
    entry.rollback()
    assert live.refresh() and live.get() == ("v1", "one")
    assert swaps == ["v1", "v2", "v1"]


def test_a_version_that_fails_to_load_keeps_the_old_one(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "m")
    publish(entry, "one")
    live = LiveModel(entry, read)
    live.get()
    publish(entry, "broken")
    assert not live.refresh() and live.get() == ("v1", "one")


def test_maybe_refresh_checks_at_most_every_interval(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "m")
    publish(entry, "one")
    now = [0.0]
    live = LiveModel(entry, read, check_every_s=5, clock=lambda: now[0])
    live.get()
    publish(entry, "two")
    now[0] = 1.0
    assert not live.maybe_refresh() and live.version == "v1"
    now[0] = 6.0
    assert live.maybe_refresh() and live.version == "v2"


def test_watcher_thread_swaps_without_being_asked(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "m")
    publish(entry, "one")
    live = LiveModel(entry, read)
    live.get()
    live.watch(interval_s=0.05)
    try:
        publish(entry, "two")
        deadline = time.monotonic() + 5
        while live.version != "v2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.model == "two"
    finally:
        live.stop()


def test_an_entry_without_a_version_says_how_to_publish(tmp_path: Path) -> None:
    live = LiveModel(ModelEntry(tmp_path / "m"), read)
    with pytest.raises(ModelError, match=r"no current version of 'm'.*Fix: publish"):
        live.get()
