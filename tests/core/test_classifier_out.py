"""`threefold classifier train --out`: a registry entry is never replaced (its versions are what
apps serve and roll back to), and the saved classifier is readable by other users."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from threefold.apps.cli import cli
from threefold.core.registry import ModelEntry

ROWS = [
    ["profit rose sharply this quarter", "positive"],
    ["sales grew strongly in every region", "positive"],
    ["shares jumped after strong results", "positive"],
    ["profit fell sharply this quarter", "negative"],
    ["sales dropped badly in every region", "negative"],
    ["shares slumped after weak results", "negative"],
]


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "label"], *ROWS])
    return path


def train(train_csv: Path, out: Path, *extra: str) -> Result:
    """The cheapest real training run: the contrastive path, two steps, no eval split."""
    args = ["--strategy", "contrastive", "--max-steps", "2", "--eval-fraction", "0"]
    return CliRunner().invoke(
        cli,
        ["classifier", "train", "--train", str(train_csv), "--out", str(out), *args, *extra],
    )


def multitask_entry(root: Path) -> ModelEntry:
    """An alerts-multitask entry with versions v1 and v2 (v2 current)."""
    entry = ModelEntry(root / "alerts-multitask")
    for _ in range(2):
        entry.publish(lambda folder, v: (folder / "threefold_multitask.json").write_text(v))
    return entry


def listed(root: Path) -> list[dict]:
    result = CliRunner().invoke(cli, ["models", "list", "--registry", str(root)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["models"]


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_registry_entry_as_out_is_refused_and_keeps_every_version(
    train_csv: Path, tmp_path: Path, overwrite: bool
) -> None:
    entry = multitask_entry(tmp_path)
    before = listed(tmp_path)
    result = train(train_csv, entry.path, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        f"--out {entry.path} is the model registry entry {entry.path} (state.json and versions "
        "['v1', 'v2']), not a classifier folder" in result.stderr
    )
    assert f"`threefold alerts train --registry {tmp_path}`" in result.stderr
    assert "pass --overwrite" not in result.stderr
    assert "training path:" not in result.stderr  # refused before training
    assert listed(tmp_path) == before and entry.current_version() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts-multitask"]


def test_a_version_folder_of_an_entry_as_out_is_refused(train_csv: Path, tmp_path: Path) -> None:
    entry = multitask_entry(tmp_path)
    for out in (entry.version_dir("v1"), entry.path / "versions"):
        result = train(train_csv, out, "--overwrite")
        assert result.exit_code == 1, result.output
        assert f"--out {out} lies in the model registry entry {entry.path}" in result.stderr
    assert entry.versions() == ["v1", "v2"]
    assert (entry.version_dir("v1") / "threefold_multitask.json").read_text() == "v1"


def test_a_registry_root_as_out_is_refused(train_csv: Path, tmp_path: Path) -> None:
    entry = multitask_entry(tmp_path)
    result = train(train_csv, tmp_path, "--overwrite")
    assert result.exit_code == 1, result.output
    assert (
        f"--out {tmp_path} is a model registry holding the models ['alerts-multitask']"
        in result.stderr
    )
    assert f"Fix: choose a new --out, such as {tmp_path / 'classifier'}" in result.stderr
    assert entry.versions() == ["v1", "v2"] and entry.current_version() == "v2"


def test_an_entry_made_while_training_is_not_replaced(
    train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run publishes into --out while this one trains: this run's model is kept aside."""
    from threefold.core import classifier_training

    out = tmp_path / "alerts-multitask"
    real_train = classifier_training.train_classifier_from_files

    def another_run_publishes_meanwhile(*args, **kwargs):
        model = real_train(*args, **kwargs)
        multitask_entry(tmp_path)
        return model

    monkeypatch.setattr(
        classifier_training, "train_classifier_from_files", another_run_publishes_meanwhile
    )
    result = train(train_csv, out, "--overwrite")
    assert result.exit_code == 1, result.output
    assert f"--out {out} is the model registry entry" in result.stderr
    (kept,) = [p for p in tmp_path.iterdir() if p != out]
    assert f"The trained classifier is kept at {kept}" in result.stderr
    assert (kept / "threefold_classifier.json").is_file()
    assert ModelEntry(out).versions() == ["v1", "v2"]


def test_a_saved_classifier_is_readable_by_other_users(train_csv: Path, tmp_path: Path) -> None:
    """safetensors and tempfile write owner-only files; the folder moved into --out has the
    umask's permissions throughout, so a server running as another user can load it."""
    out = tmp_path / "model"
    old = os.umask(0o022)
    try:
        result = train(train_csv, out)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    saved = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "head.safetensors", "threefold_classifier.json"} <= saved
    found = {
        str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [out, *out.rglob("*")]
    }
    assert found == {name: "0o755" if (out / name).is_dir() else "0o644" for name in found}, found
