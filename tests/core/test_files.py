"""Atomic JSON files: written whole, read back, and clear errors for broken ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from threefold.core.errors import ConfigError, ModelError
from threefold.core.files import (
    FolderNotMovedError,
    move_dir_into_place,
    read_json,
    removed_on_error,
    staging_dir,
    write_json_atomic,
)


def test_written_json_reads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"labels": ["négatif", "positif"], "n": 2})
    write_json_atomic(path, {"labels": ["a", "b"], "n": 3})
    assert read_json(path, "the model") == {"labels": ["a", "b"], "n": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_unreadable_json_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(ModelError, match=r"meta\.json is not readable JSON .*save the index again"):
        read_json(path, "the index")


def test_json_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ModelError, match="holds a JSON list, expected an object"):
        read_json(path, "the index")


def new_folder(target: Path, content: str) -> Path:
    folder = staging_dir(target)
    (folder / "model.txt").write_text(content)
    return folder


def test_a_staged_folder_takes_an_absent_or_empty_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    move_dir_into_place(new_folder(target, "first"), target, replace=False)
    assert (target / "model.txt").read_text() == "first"
    empty = tmp_path / "empty"
    empty.mkdir()
    move_dir_into_place(new_folder(empty, "second"), empty, replace=False)
    assert (empty / "model.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_a_non_empty_target_is_kept_unless_replacing_and_then_swapped_whole(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FolderNotMovedError, match=r"the new folder is kept at .*out\.") as caught:
        move_dir_into_place(new_folder(target, "new"), target, replace=False)
    assert caught.value.target_taken and caught.value.old_kept is None
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert (caught.value.kept / "model.txt").read_text() == "new"  # visible, beside the target
    shutil.rmtree(caught.value.kept)
    move_dir_into_place(new_folder(target, "new"), target, replace=True)
    assert [p.name for p in target.iterdir()] == ["model.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old copy is gone


def test_a_symlinked_target_keeps_its_link_and_its_real_folder_gets_the_new_one(
    tmp_path: Path,
) -> None:
    real = tmp_path / "disk" / "model"
    real.mkdir(parents=True)
    (real / "model.txt").write_text("old")
    link = tmp_path / "model"
    link.symlink_to(real)
    move_dir_into_place(new_folder(link, "new"), link, replace=True)
    assert link.is_symlink() and link.resolve() == real
    assert (link / "model.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "model"]
    assert [p.name for p in real.parent.iterdir()] == ["model"]  # staged and swapped there


@pytest.mark.parametrize("place", [".", "..", "{cwd}"])
def test_the_current_folder_or_one_above_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch, place: str
) -> None:
    cwd = tmp_path / "project" / "work"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    target = Path(place.format(cwd=cwd))
    with pytest.raises(ConfigError, match=r"current folder or one above it.*Fix: pass a new"):
        staging_dir(target)
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(ConfigError, match="current folder or one above it"):
        move_dir_into_place(staged, target, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "staged"]
    assert [p.name for p in cwd.parent.iterdir()] == ["work"] and not any(cwd.iterdir())


@pytest.mark.skipif(not os.path.ismount("/proc"), reason="needs /proc mounted (Linux)")
def test_a_mount_point_is_refused_before_anything_is_written() -> None:
    with pytest.raises(ConfigError, match=r"/proc is a mount point.*such as /proc/model"):
        staging_dir(Path("/proc"))


def test_a_failed_rename_keeps_the_new_folder_in_sight_and_says_where(tmp_path: Path) -> None:
    target = tmp_path / "out"
    staged = new_folder(target, "new")
    target.write_text("a file appeared at the target meanwhile")
    with pytest.raises(FolderNotMovedError, match="kept at") as caught:
        move_dir_into_place(staged, target, replace=True)
    kept = caught.value.kept
    assert not caught.value.target_taken and str(kept) in str(caught.value)
    assert kept.parent == tmp_path and kept.name.startswith("out.")
    assert (kept / "model.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", kept.name]


def test_racing_replacements_keep_both_models_in_sight(tmp_path: Path, monkeypatch) -> None:
    """Another run's folder lands between this run's two renames: nothing is deleted, and the
    error says where this run's folder and the one the target held before are."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.txt").write_text("old")
    staged = new_folder(target, "mine")
    rename = os.rename

    def other_run_lands(src, dst) -> None:
        if src == staged and not target.exists():  # this run moved the old folder aside
            target.mkdir()
            (target / "model.txt").write_text("theirs")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", other_run_lands)
    with pytest.raises(FolderNotMovedError) as caught:
        move_dir_into_place(staged, target, replace=True)
    error = caught.value
    assert error.target_taken and f"held before is at {error.old_kept}" in str(error)
    assert (target / "model.txt").read_text() == "theirs"
    assert (error.kept / "model.txt").read_text() == "mine"
    assert (error.old_kept / "model.txt").read_text() == "old"
    assert not error.old_kept.name.startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out", error.kept.name, error.old_kept.name]
    )


def test_removed_on_error_removes_the_folder_only_when_the_block_fails(tmp_path: Path) -> None:
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    kept.mkdir()
    dropped.mkdir()
    with removed_on_error(kept):
        (kept / "model.txt").write_text("done")
    with pytest.raises(KeyboardInterrupt), removed_on_error(dropped):
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
