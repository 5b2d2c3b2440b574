"""`threefold qa build` through click: what it refuses to write into."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from threefold.apps.qa.cli import qa
from threefold.apps.qa.config import SAMPLE_KB
from threefold.core.registry import ModelEntry


def test_build_refuses_to_publish_a_bot_into_another_apps_registry_entry(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "alerts-multitask")  # an alerts model the consumer follows
    entry.publish(lambda folder, _v: (folder / "threefold_multitask.json").write_text("{}"))
    args = ["build", "--kb", str(SAMPLE_KB), "--out", str(entry.path), "--no-intent-model"]
    result = CliRunner().invoke(qa, args)
    assert result.exit_code == 1, result.output
    assert "is not a FAQ bot" in result.output and "Traceback" not in result.output
    assert entry.versions() == ["v1"] and entry.current_version() == "v1"
