"""How benchmarks call the `threefold` command line (the contract they measure)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def threefold_command() -> list[str]:
    """argv prefix for `threefold`: the venv's console script, else PATH, else the module."""
    script = Path(sys.executable).with_name("threefold")
    if script.is_file():
        return [str(script)]
    found = shutil.which("threefold")
    if found:
        return [found]
    return [sys.executable, "-c", "from threefold.apps.cli import main; main()"]
