"""The Lua scripts of the Redis adapters (scripts/<name>.lua), read once per process."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "scripts"


@cache
def lua_script(name: str) -> str:
    """The source of scripts/<name>.lua."""
    return (SCRIPTS / f"{name}.lua").read_text(encoding="utf-8")
