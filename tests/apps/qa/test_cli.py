"""`threefold qa build` through click: what it refuses to write into, KB rows it refuses, and
publishing under the bot directory's edit lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.qa.cli import qa
from threefold.apps.qa.config import SAMPLE_KB
from threefold.apps.qa.store import EDIT_LOCK_FILE, BotStore
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


def test_build_publishes_under_the_edit_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's admin edit reads the newest version and publishes under the lock; a build
    publishing in between would be discarded by that edit, so the build takes the lock too."""
    out = tmp_path / "bot"
    held_while_publishing: list[bool] = []
    publish = BotStore.publish

    def checked_publish(self: BotStore, *args: object, **kwargs: object) -> str:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / EDIT_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held_while_publishing.append(False)
        except BlockingIOError:
            held_while_publishing.append(True)
        finally:
            os.close(fd)
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(BotStore, "publish", checked_publish)
    args = ["build", "--kb", str(SAMPLE_KB), "--out", str(out), "--no-intent-model"]
    result = CliRunner().invoke(qa, args)
    assert result.exit_code == 0, result.output
    assert held_while_publishing == [True]
    assert len(BotStore(out).entry.versions()) == 1
