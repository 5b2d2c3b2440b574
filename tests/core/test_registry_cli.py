"""`threefold models`: list, show, promote, rollback and prune print JSON; errors say the fix."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.core.gate import judge, publish_gated
from threefold.core.registry import ModelEntry


def run(*args: str) -> tuple[int, dict | str]:
    result = CliRunner().invoke(cli, ["models", *args])
    if result.exit_code == 0:
        return 0, json.loads(result.output)
    return result.exit_code, result.output


def make_registry(root: Path) -> None:
    entry = ModelEntry(root / "alerts-sentiment")
    write = lambda folder, version: (folder / "w").write_text(version)  # noqa: E731
    publish_gated(entry, write, judge("macro_f1", 0.70, None))
    publish_gated(entry, write, judge("macro_f1", 0.75, 0.70))
    publish_gated(entry, write, judge("macro_f1", 0.60, 0.75))


def test_list_show_promote_rollback_prune(tmp_path: Path) -> None:
    make_registry(tmp_path)
    code, listed = run("list", "--registry", str(tmp_path))
    assert code == 0
    (model,) = listed["models"]
    assert model["name"] == "alerts-sentiment" and model["current"] == "v2"
    assert [v["status"] for v in model["versions"]] == ["previous", "current", "rejected"]
    assert "rejected, the live version stays" in model["versions"][2]["gate"]

    code, shown = run("show", "alerts-sentiment", "--registry", str(tmp_path))
    assert shown["version"] == "v2" and shown["metrics"] == {"macro_f1": 0.75}
    assert shown["path"].endswith("versions/v2")

    code, promoted = run("promote", "alerts-sentiment", "v3", "--registry", str(tmp_path))
    assert promoted == {"name": "alerts-sentiment", "current": "v3", "previous": "v2"}
    code, rolled = run("rollback", "alerts-sentiment", "--registry", str(tmp_path))
    assert rolled == {"name": "alerts-sentiment", "current": "v2", "rolled_back_from": "v3"}
    code, pruned = run("prune", "alerts-sentiment", "--keep", "1", "--registry", str(tmp_path))
    assert pruned["removed"] == ["v1"] and pruned["versions"] == ["v2", "v3"]


def test_registry_from_the_environment_and_clear_errors(tmp_path: Path, monkeypatch) -> None:
    make_registry(tmp_path)
    monkeypatch.setenv("THREEFOLD_MODELS_DIR", str(tmp_path))
    code, listed = run("list")
    assert code == 0 and listed["registry"] == str(tmp_path)
    code, message = run("show", "nope")
    assert code == 1 and "no model 'nope'" in message and "alerts-sentiment" in message
    code, message = run("promote", "alerts-sentiment", "v9")
    assert code == 1 and "has no version 'v9'" in message


def test_a_registry_folder_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    for command in (["list"], ["show", "alerts-sentiment"]):
        code, message = run(*command, "--registry", str(tmp_path / "nowhere"))
        assert code == 1 and "Traceback" not in message
        assert f"the registry folder {tmp_path / 'nowhere'} does not exist. Fix: pass" in message
