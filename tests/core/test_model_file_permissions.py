"""Saved and published models are readable by other users (the umask's permissions, not the
owner-only ones of temporary files and safetensors), and an unreadable state file says so."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from threefold.apps.cli import cli
from threefold.core.errors import ModelError
from threefold.core.files import move_dir_into_place, staging_dir, write_json_atomic
from threefold.core.index import FaissIndex
from threefold.core.registry import ModelEntry

NOBODY = 65534


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    """Permission bits of `folder` and of everything under it, by relative path."""
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in [folder, *folder.rglob("*")]
    }


def assert_modes(folder: Path, *, files: int, dirs: int) -> None:
    found = modes(folder)
    expected = {
        name: dirs if (folder / name).is_dir() else files for name in found
    }  # every file and folder, by name, so a failure shows which
    assert {k: oct(v) for k, v in found.items()} == {k: oct(v) for k, v in expected.items()}


def write_like_the_libraries(folder: Path, version: str) -> None:
    """What a model save writes: safetensors weights and a FAISS index folder (owner-only
    files from these libraries), a file from tempfile (as the QA knowledge base does) and
    atomic JSON."""
    save_file({"weight": torch.zeros(4)}, str(folder / "model.safetensors"))
    index = FaissIndex(4)
    index.add(["a", "b"], torch.eye(4)[:2].numpy())
    index.save(folder / "index")
    fd, tmp = tempfile.mkstemp(dir=folder)
    os.close(fd)
    os.replace(tmp, folder / "kb.json")
    write_json_atomic(folder / "threefold_classifier.json", {"version": version})


@pytest.mark.parametrize(("mask", "files", "dirs"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_every_file_of_a_published_entry_has_the_umasks_permissions(
    tmp_path: Path, mask: int, files: int, dirs: int
) -> None:
    entry = ModelEntry(tmp_path / "alerts-topic")
    with umask(mask):
        entry.publish(write_like_the_libraries)
        entry.publish(write_like_the_libraries)
        entry.rollback()  # state.json rewritten
    assert (entry.path / "versions" / "v2" / "index" / "ids.json").is_file()
    assert_modes(entry.path, files=files, dirs=dirs)


def test_atomic_json_and_a_folder_moved_into_place_get_the_umasks_permissions(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model"
    with umask(0o022):
        staged = staging_dir(target)
        write_like_the_libraries(staged, "v1")
        (staged / "sub").mkdir(mode=0o700)
        (staged / "sub" / "run.sh").write_text("#!/bin/sh\n")
        (staged / "sub" / "run.sh").chmod(0o700)  # an executable keeps its x bits
        move_dir_into_place(staged, target, replace=False)
    found = modes(target)
    assert found.pop("sub/run.sh") == 0o755
    assert_modes(target / "index", files=0o644, dirs=0o755)
    assert {oct(mode) for name, mode in found.items() if (target / name).is_file()} == {"0o644"}
    assert {oct(mode) for name, mode in found.items() if (target / name).is_dir()} == {"0o755"}


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp folders are owner-only)."""
    folder = Path(tempfile.mkdtemp(prefix="threefold-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@contextmanager
def as_another_user() -> Iterator[None]:
    """Run the block as `nobody` when this process is root (root reads any file); otherwise as
    this user, whom the test's chmod 000 locks out as well."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_an_unreadable_state_file_is_reported_as_a_permission_problem(shared_tmp: Path) -> None:
    entry = ModelEntry(shared_tmp / "qa-bot")
    entry.publish(lambda folder, version: (folder / "bot.json").write_text("{}"))
    ModelEntry(shared_tmp / "recs-ranker").publish(lambda f, v: (f / "model.json").write_text(""))
    state = entry.path / "state.json"
    state.chmod(0o000)
    with as_another_user():
        with pytest.raises(ModelError) as caught:
            entry.current_version()
        shown = CliRunner().invoke(cli, ["models", "show", "qa-bot", "--registry", str(shared_tmp)])
        listed = CliRunner().invoke(cli, ["models", "list", "--registry", str(shared_tmp)])
    message = str(caught.value)
    assert f"cannot read {state}: permission denied (it is ----------" in message
    assert f"Fix: give this user access, e.g. `chmod a+r {state}`" in message
    assert "delete it" not in message  # not reported as a corrupt file
    assert shown.exit_code == 1 and "Traceback" not in shown.output
    assert f"cannot read {state}: permission denied" in shown.stderr
    assert listed.exit_code == 0, listed.output
    bot, recs = json.loads(listed.stdout)["models"]
    assert bot["name"] == "qa-bot" and "permission denied" in bot["error"]
    assert [v["status"] for v in bot["versions"]] == ["unknown"]
    assert recs["current"] == "v1" and "error" not in recs


def test_a_saved_knowledge_base_has_the_umasks_permissions(tmp_path: Path) -> None:
    from threefold.apps.qa.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.load(Path(__file__).parents[2] / "apps" / "qa" / "data" / "store_faq.csv")
    with umask(0o022):
        kb.save(tmp_path / "bot" / "kb.json")
    assert stat.S_IMODE((tmp_path / "bot" / "kb.json").stat().st_mode) == 0o644
    assert KnowledgeBase.load_saved(tmp_path / "bot" / "kb.json").to_json() == kb.to_json()


@pytest.mark.slow
def test_alerts_train_into_a_plain_folder_saves_files_other_users_can_read(tmp_path: Path) -> None:
    # fmt: off
    args = ["alerts", "train", "--out", str(tmp_path / "joint"), "--max-steps", "1",
            "--eval-fraction", "0", "--batch-size", "8", "--max-length", "24", "--no-progress"]
    # fmt: on
    with umask(0o022):
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert_modes(tmp_path / "joint", files=0o644, dirs=0o755)
