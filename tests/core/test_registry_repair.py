"""`threefold models` repairs a model whose current version's folder has gone, lists a broken
model inline (the others still listed), and reads a version.json that is not UTF-8 cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from threefold.core.registry import ModelEntry


def models(*args: str, root: Path) -> Result:
    from threefold.apps.cli import cli

    return CliRunner().invoke(cli, ["models", *args, "--registry", str(root)])


def publish(entry: ModelEntry, times: int) -> None:
    for _ in range(times):
        entry.publish(lambda folder, version: (folder / "model.json").write_text(version))


def broken_registry(root: Path) -> ModelEntry:
    """'bad': versions v1..v3 activated in turn, then v3's folder deleted by hand; 'good': v1."""
    bad = ModelEntry(root / "bad")
    publish(bad, 3)
    shutil.rmtree(bad.version_dir("v3"))
    publish(ModelEntry(root / "good"), 1)
    return bad


def test_list_reports_a_missing_current_version_inline_and_lists_the_others(
    tmp_path: Path,
) -> None:
    broken_registry(tmp_path)
    result = models("list", root=tmp_path)
    assert result.exit_code == 0, result.output
    bad, good = json.loads(result.stdout)["models"]
    assert bad["name"] == "bad" and bad["current"] is None
    assert "names version 'v3', which does not exist; available: ['v1', 'v2']" in bad["error"]
    assert "Fix: promote one of those: `threefold models promote bad VERSION" in bad["error"]
    assert [(v["version"], v["status"]) for v in bad["versions"]] == [
        ("v1", "previous"),
        ("v2", "previous"),
    ]
    assert good["current"] == "v1" and "error" not in good


def test_promote_repairs_a_missing_current_version(tmp_path: Path) -> None:
    bad = broken_registry(tmp_path)
    result = models("promote", "bad", "v1", root=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "bad",
        "current": "v1",
        "previous": "v3",
        "previous_missing": True,
    }
    assert bad.current_version() == "v1"
    listed = json.loads(models("list", root=tmp_path).stdout)["models"]
    assert [m.get("error") for m in listed] == [None, None]


def test_rollback_repairs_a_missing_current_version(tmp_path: Path) -> None:
    bad = broken_registry(tmp_path)
    result = models("rollback", "bad", root=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "bad",
        "current": "v2",
        "rolled_back_from": "v3",
        "rolled_back_from_missing": True,
    }
    assert bad.current_version() == "v2"
    shown = json.loads(models("show", "bad", root=tmp_path).stdout)
    assert shown["version"] == "v2" and shown["status"] == "current"


def test_rollback_to_a_version_whose_folder_has_gone_is_refused(tmp_path: Path) -> None:
    """Rolling back would only move the pointer to another missing folder."""
    entry = ModelEntry(tmp_path / "m")
    publish(entry, 3)
    shutil.rmtree(entry.version_dir("v2"))
    result = models("rollback", "m", root=tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot roll back to model 'm' version 'v2' (current before 'v3')" in result.stderr
    assert "Fix: promote one of the versions there instead: ['v1', 'v3']" in result.stderr
    assert entry.current_version() == "v3" and entry.history() == ["v1", "v2", "v3"]


def test_a_version_json_that_is_not_utf8_is_shown_with_the_fix(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "m")
    publish(entry, 2)
    (entry.version_dir("v1") / "version.json").write_bytes(b'{"created_by": "\xff\xfe"}')
    shown = models("show", "m", "v1", root=tmp_path)
    assert shown.exit_code == 0, shown.output
    error = json.loads(shown.stdout)["metadata_error"]
    assert "version.json is not readable JSON ('utf-8' codec can't decode" in error
    assert "Fix: restore it from a backup, or publish the model again" in error
    listed = models("list", root=tmp_path)
    assert listed.exit_code == 0, listed.output
    (model,) = json.loads(listed.stdout)["models"]
    assert [v["status"] for v in model["versions"]] == ["previous", "current"]
