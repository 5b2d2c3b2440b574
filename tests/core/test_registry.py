"""ModelRegistry/ModelEntry: publish with metadata, natural order, pointer, rollback, prune."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from threefold.core.errors import ConfigError, ModelError
from threefold.core.registry import ModelEntry, ModelRegistry, VersionedFolders, data_fingerprint


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
    assert current == registry.root / "qa-embedder" / "versions" / "v1"
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
    state = registry.root / "m" / "state.json"
    state.write_text('{"current": "v9", "history": ["v1", "v9"]}', encoding="utf-8")
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
    assert sorted(p.name for p in (registry.root / "m").iterdir()) == ["state.json", "versions"]
    assert sorted(p.name for p in (registry.root / "m" / "versions").iterdir()) == ["v1", "v2"]


@pytest.fixture
def folders(tmp_path: Path) -> VersionedFolders:
    return VersionedFolders(
        tmp_path / "versions",
        tmp_path / "state.json",
        label="thing",
        next_version=lambda existing: f"v{len(existing) + 1}",
    )


def test_published_version_is_readable_by_other_users(folders: VersionedFolders) -> None:
    """A server running as another user (another container's uid) reads a version folder
    filled in place (a bot's build): it has the umask's permissions, not a temporary folder's
    owner-only ones, and nothing is left beside it, also when a write fails."""
    old_umask = os.umask(0o022)
    try:
        folders.publish(lambda folder, version: (folder / "kb.json").write_text("{}"))
        with pytest.raises(ZeroDivisionError):
            folders.publish(lambda folder, version: 1 / 0)
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE(folders.path("v1").stat().st_mode)
    assert mode == 0o755, oct(mode)
    assert [p.name for p in folders.versions_dir.iterdir()] == ["v1"]


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


def test_every_version_records_where_it_came_from(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("clf", model_dir(tmp_path, "a"), metadata={"created_by": "alice"})
    registry.publish("clf", model_dir(tmp_path, "b"), metadata={"data_fingerprint": "abc"})
    entry = registry.entry("clf")
    first, second = entry.infos()
    assert first["created_by"] == "alice" and first["parent"] is None
    assert first["status"] == "previous" and second["status"] == "current"
    assert second["parent"] == "v1" and second["data_fingerprint"] == "abc"
    assert second["created_at"].endswith("Z") and second["name"] == "clf"
    assert registry.names() == ["clf"]


def test_a_rejected_candidate_stays_aside_until_promoted(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.publish("clf", model_dir(tmp_path, "a"))
    entry = registry.entry("clf")
    version = entry.publish_dir(
        model_dir(tmp_path, "b"), activate=False, metadata={"gate": {"promoted": False}}
    )
    assert entry.current_version() == "v1" and entry.info(version)["status"] == "rejected"
    entry.promote(version, by="operator")
    assert entry.current_version() == "v2" and entry.info("v2")["status"] == "current"
    assert entry.rollback() == "v1"


def test_prune_keeps_the_newest_and_the_current(registry: ModelRegistry, tmp_path: Path) -> None:
    for tag in "abcde":
        registry.publish("m", model_dir(tmp_path, tag))
    entry = registry.entry("m")
    entry.promote("v1")
    assert entry.prune(2) == ["v2", "v3"]
    assert entry.versions() == ["v1", "v4", "v5"] and entry.current_version() == "v1"
    with pytest.raises(ConfigError, match="keep must be >= 1"):
        entry.prune(0)


def test_pointer_stamp_changes_with_every_activation(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    entry = registry.entry("m")
    assert entry.pointer_stamp() is None and not ModelEntry.is_entry(entry.path)
    registry.publish("m", model_dir(tmp_path, "a"))
    registry.publish("m", model_dir(tmp_path, "b"))
    stamps = {entry.pointer_stamp()}
    entry.rollback()
    stamps.add(entry.pointer_stamp())
    assert len(stamps) == 2 and ModelEntry.is_entry(entry.path)


def test_a_broken_state_file_says_how_to_fix_it(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.publish("m", model_dir(tmp_path, "a"))
    (registry.root / "m" / "state.json").write_text("v1", encoding="utf-8")
    with pytest.raises(ModelError, match=r"not a version state file.*promote a version again"):
        registry.current("m")


@pytest.mark.parametrize(
    "content",
    [
        b'{"history": ["v1"]}',  # no "current"
        b'{"current": 1, "history": [1]}',
        b'{"current": "../../elsewhere", "history": ["v1"]}',
        b'{"current": "v1", "history": ["v1", null]}',
        b'{"current": "v\xe9", "history": []}',  # not UTF-8
    ],
)
def test_a_state_file_of_the_wrong_shape_is_a_model_error(
    registry: ModelRegistry, tmp_path: Path, content: bytes
) -> None:
    registry.publish("m", model_dir(tmp_path, "a"))
    (registry.root / "m" / "state.json").write_bytes(content)
    with pytest.raises(ModelError, match=r"not a version state file"):
        registry.entry("m").current_version()
    with pytest.raises(ModelError, match=r"not a version state file"):
        registry.entry("m").infos()


def test_info_of_a_path_outside_the_versions_folder_is_refused(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.publish("m", model_dir(tmp_path, "a"))
    for version in ("..", "../..", "v1/../.."):
        with pytest.raises(ModelError, match="has no version"):
            registry.entry("m").info(version)


def test_data_fingerprint_covers_files_strings_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\nup,positive\n", encoding="utf-8")
    one = data_fingerprint(path, ["a", "b"])
    assert one == data_fingerprint(path, ["a", "b"]) and len(one) == 16
    assert one != data_fingerprint(path, ["a", "c"]) != data_fingerprint(path, ["ab"])
