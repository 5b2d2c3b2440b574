"""`make test`, the README's test command, and CI's .ci/run, which runs it.

pytest exits 5 when it collected no tests (a wrong path, every module failing to import under
`--continue-on-collection-errors`, a marker expression matching nothing): that run must fail and
say why. make turns any failed recipe into its own exit code 2, so only the recipe can tell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_TESTS = "pytest collected no tests (exit 5)"


def _make_test(**env: str) -> subprocess.CompletedProcess:
    """`make test` without its prerequisites (the venv and Debian packages are there)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "-o", "venv", "-o", "system-deps", "test"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_test_fails_saying_so_when_pytest_collects_nothing(tmp_path: Path) -> None:
    done = _make_test(PYTEST_ADDOPTS=f"{tmp_path} -p no:cacheprovider")  # a folder of no tests
    assert done.returncode != 0
    assert NO_TESTS in done.stderr, done.stderr


def test_make_test_passes_pytests_exit_code_through() -> None:
    """A run that collected and passed tests exits 0 and prints no such message."""
    done = _make_test(
        PYTEST_ADDOPTS=f"{Path(__file__).parent / 'test_dependency_lock.py'} -p no:cacheprovider "
        "-k python_floor"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert NO_TESTS not in done.stderr


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    assert "make test" in (ROOT / "README.md").read_text()
    assert "-eq 5" not in script, "make exits 2 on any failure: check exit 5 in its recipe"
