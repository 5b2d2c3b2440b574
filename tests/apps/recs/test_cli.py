"""`threefold recs build` through click: what it refuses to write into."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from threefold.apps.recs.cli import recs
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
