"""`threefold recs build` through click: what it writes into and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.recs.cli import recs
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.ranker_store import MODEL_FILE, SEQUENCE_DIR, RankerModel
from threefold.core.registry import ModelEntry


def test_build_refuses_to_publish_a_ranker_into_another_apps_registry_entry(
    tmp_path: Path,
) -> None:
    entry = ModelEntry(tmp_path / "bot")  # a FAQ bot directory the QA API follows
    entry.publish(lambda folder, _v: (folder / "bot.json").write_text("{}"))
    # fmt: off
    args = ["build", "--out", str(entry.path), "--no-fine-tune", "--no-sequence",
            "--max-steps", "1", "--max-pairs", "50"]
    # fmt: on
    result = CliRunner().invoke(recs, args)
    assert result.exit_code == 1, result.output
    assert "is not a recs ranker" in result.output and "Traceback" not in result.output
    assert entry.versions() == ["v1"] and entry.current_version() == "v1"


def _quick_build(out: Path, *extra: str) -> list[str]:
    # fmt: off
    return ["build", "--out", str(out), "--no-fine-tune", "--no-sequence", "--max-steps", "1",
            "--max-pairs", "50", *extra]
    # fmt: on


def test_build_replaces_an_existing_model_only_with_overwrite(embedder, tmp_path: Path) -> None:
    out = tmp_path / "m"
    RankerModel(encoder=embedder, combiner=LinearCombiner(), info={"build": "old"}).save(out)
    (out / SEQUENCE_DIR).mkdir()  # the old build trained a sequence ranker; this one does not
    refused = CliRunner().invoke(recs, _quick_build(out))
    assert refused.exit_code == 1, refused.output
    assert f"--out {out} already holds a recs model; pass --overwrite" in refused.output
    assert json.loads((out / MODEL_FILE).read_text()) == {"build": "old"}  # left as it was
    result = CliRunner().invoke(recs, _quick_build(out, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert "validation" in RankerModel.load(out).info and not (out / SEQUENCE_DIR).exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "file.txt" / "m", "cannot write the recs model folder"),
        (lambda tmp: tmp / "docs", "is not empty and not a recs model folder"),
    ],
)
def test_build_refuses_a_bad_out_before_reading_the_data(tmp_path: Path, make, message) -> None:
    (tmp_path / "file.txt").write_text("a file, not a folder")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    missing = str(tmp_path / "no-such-items.csv")  # the build's work would fail on it first
    result = CliRunner().invoke(recs, [*_quick_build(make(tmp_path)), "--items", missing])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def test_build_refuses_the_current_folder_as_out_before_reading_the_data(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(recs, [*_quick_build(Path(".")), "--items", "no-such-items.csv"])
    assert result.exit_code == 1, result.output
    assert ". is the current folder or one above it" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []
