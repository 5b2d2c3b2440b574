"""Atomic JSON files: written whole, read back, and clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.core.errors import ModelError
from threefold.core.files import read_json, write_json_atomic


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
