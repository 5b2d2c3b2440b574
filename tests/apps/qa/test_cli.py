"""`threefold qa build` through click: what it refuses to write into, and KB rows it refuses."""

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


def test_build_refuses_a_kb_row_breaking_the_contract_naming_the_row(tmp_path: Path) -> None:
    kb = tmp_path / "kb.csv"
    kb.write_text("id,question,answer\nok,Q?,A.\nb,\u200b,A.\n", encoding="utf-8")
    args = ["build", "--kb", str(kb), "--out", str(tmp_path / "bot"), "--no-intent-model"]
    result = CliRunner().invoke(qa, args)
    assert result.exit_code == 1, result.output
    assert "line 3, column question: the question of FAQ 'b' must be non-empty text" in (
        result.output
    )
    assert "Traceback" not in result.output and not (tmp_path / "bot").exists()
