"""ModelRegistry: publish copies, versions sort naturally, current pointer, rollback, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.core.errors import ConfigError, ModelError
from threefold.core.registry import ModelRegistry, VersionedFolders


def model_dir(tmp_path: Path, tag: str) -> Path:
    folder = tmp_path / f"src-{tag}"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(tag.encode())
    (folder / "sub" / "config.json").write_text(f'{{"tag": "{tag}"}}', encoding="utf-8")
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_publish_copies_and_becomes_current(registry: ModelRegistry, tmp_path: Path) -> None:
    source = model_dir(tmp_path, "a")
    version = registry.publish("qa-embedder", source)
    assert version == "v1"
    current = registry.current("qa-embedder")
    assert current == registry.root / "qa-embedder" / "v1"
    assert (current / "weights.bin").read_bytes() == b"a"
    assert (current / "sub" / "config.json").is_file()
    (source / "weights.bin").write_bytes(b"changed")  # a copy, not a link
    assert (current / "weights.bin").read_bytes() == b"a"


def test_versions_sort_naturally_and_rollback(registry: ModelRegistry, tmp_path: Path) -> None:
    for i in range(1, 12):
        registry.publish("clf", model_dir(tmp_path, str(i)))
    versions = registry.versions("clf")
    assert versions == [f"v{i}" for i in range(1, 12)]
    assert registry.current("clf").name == "v11"
    assert registry.rollback("clf") == "v10"
    assert (registry.current("clf") / "weights.bin").read_bytes() == b"10"
    assert registry.rollback("clf") == "v9"


def test_explicit_versions_and_set_current(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "x"), version="2026-01-02")
    registry.publish("m", model_dir(tmp_path, "y"), version="2026-03-01")
    registry.set_current("m", "2026-01-02")
    assert registry.current_version("m") == "2026-01-02"
    assert registry.versions("m") == ["2026-01-02", "2026-03-01"]
    with pytest.raises(ModelError, match=r"no version 'nope'; available: \['2026-01-02', "):
        registry.set_current("m", "nope")


def test_versions_are_never_overwritten(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "x"), version="v1")
    with pytest.raises(ConfigError, match="already exists"):
        registry.publish("m", model_dir(tmp_path, "y"), version="v1")
    assert (registry.current("m") / "weights.bin").read_bytes() == b"x"
    assert registry.publish("m", model_dir(tmp_path, "z")) == "v2"


def test_missing_model_says_how_to_publish(registry: ModelRegistry) -> None:
    assert registry.versions("ghost") == []
    with pytest.raises(ModelError, match=r"no current version of 'ghost'.*publish"):
        registry.current("ghost")


def test_rollback_from_oldest_fails(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "x"))
    with pytest.raises(ModelError, match="oldest"):
        registry.rollback("m")


def test_dangling_pointer_is_reported(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "x"))
    (registry.root / "m" / "current").write_text("v9\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"names version 'v9', which does not exist.*\['v1'\]"):
        registry.current("m")


def test_bad_names_and_sources(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not usable as a folder name"):
        registry.publish("../escape", model_dir(tmp_path, "x"))
    with pytest.raises(ConfigError, match="not usable as a folder name"):
        registry.publish("m", model_dir(tmp_path, "y"), version="a/b")
    with pytest.raises(ModelError, match="is not a directory"):
        registry.publish("m", tmp_path / "missing")


def test_pointer_write_leaves_no_temp_files(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "x"))
    registry.publish("m", model_dir(tmp_path, "y"))
    registry.rollback("m")
    assert sorted(p.name for p in (registry.root / "m").iterdir()) == ["current", "v1", "v2"]


@pytest.fixture
def folders(tmp_path: Path) -> VersionedFolders:
    return VersionedFolders(
        tmp_path / "versions",
        tmp_path / "state.json",
        label="thing",
        next_version=lambda existing: f"v{len(existing) + 1}",
    )


def test_versioned_folders_roll_back_along_the_activation_history(
    folders: VersionedFolders,
) -> None:
    assert folders.current_version() is None and folders.history() == []
    for name in ("a", "b", "c"):
        folders.publish(lambda folder, v: (folder / "v.txt").write_text(v), version=name)
    folders.activate("a")
    assert folders.history() == ["a", "b", "c", "a"]
    assert folders.rollback() == "c"
    assert (folders.path(folders.current_version()) / "v.txt").read_text() == "c"
    with pytest.raises(ModelError, match="thing version 'z' does not exist"):
        folders.activate("z")


def test_a_failed_write_leaves_no_version_behind(folders: VersionedFolders, tmp_path: Path) -> None:
    def broken(folder: Path, version: str) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folders.publish(broken, version="v1")
    assert folders.versions() == [] and list((tmp_path / "versions").iterdir()) == []
    assert folders.current_version() is None


def test_versioned_folders_keep_only_the_newest_and_the_current(tmp_path: Path) -> None:
    folders = VersionedFolders(
        tmp_path / "versions",
        tmp_path / "state.json",
        label="thing",
        next_version=lambda existing: f"v{len(existing) + 1}",
        keep=2,
    )
    write = lambda folder, v: (folder / "v.txt").write_text(v)  # noqa: E731
    for name in ("v1", "v2", "v3", "v4"):
        folders.publish(write, version=name)
    assert folders.versions() == ["v3", "v4"]
    assert folders.history() == ["v3", "v4"]
    assert folders.rollback() == "v3"
    folders.publish(write, version="v5", activate=False)
    folders.publish(write, version="v6", activate=False)
    assert folders.versions() == ["v3", "v5", "v6"]  # v3 is current: never pruned
    assert folders.current_version() == "v3"
    with pytest.raises(ConfigError, match="keep must be >= 1"):
        VersionedFolders(tmp_path / "x", tmp_path / "s", label="t", next_version=str, keep=0)
