"""Atomic JSON files: written whole, read back, and clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.core.errors import ModelError
from threefold.core.files import move_dir_into_place, read_json, staging_dir, write_json_atomic


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
    staged = new_folder(target, "new")
    with pytest.raises(FileExistsError):
        move_dir_into_place(staged, target, replace=False)
    assert [p.name for p in target.iterdir()] == ["old.txt"] and staged.is_dir()
    move_dir_into_place(staged, target, replace=True)
    assert [p.name for p in target.iterdir()] == ["model.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old copy is gone
