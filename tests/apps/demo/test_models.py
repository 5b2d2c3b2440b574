"""The demo's artefact cache: built once per key, rebuilt when inputs change, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.apps.demo.models import META_FILE, cache_key, cached_build


def test_cache_builds_once_and_rebuilds_when_the_sample_changes(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("text,label\ngood,positive\n", encoding="utf-8")
    builds = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "model.txt").write_text(sample.read_text(), encoding="utf-8")

    root = tmp_path / "cache"
    first = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    again = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    assert (first.built, again.built, again.path) == (True, False, first.path)
    assert len(builds) == 1

    sample.write_text("text,label\nbad,negative\n", encoding="utf-8")
    changed = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    assert changed.built and changed.path != first.path
    assert "bad" in (changed.path / "model.txt").read_text()
    other_base = cache_key([sample], "other-base", {"steps": 1})
    assert other_base != changed.key
    forced = cached_build(root, "m", changed.key, build, rebuild=True)
    assert forced.built and len(builds) == 3


def test_an_interrupted_build_leaves_no_artefact(tmp_path: Path) -> None:
    def build(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_build(tmp_path, "m", "k1", build)
    assert list(tmp_path.iterdir()) == []
    done = cached_build(tmp_path, "m", "k1", lambda out: None)
    assert done.built and (done.path / META_FILE).is_file()
