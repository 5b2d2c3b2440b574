"""The Lua scripts of the Redis adapters (scripts/<name>.lua), read once per process.

Redis runs each script on its own, so a piece two scripts share (a Lua function) lives in its
own scripts/<piece>.lua and is pasted in where a script says `-- include: <piece>` (on a line
of its own).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "scripts"
INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)


@cache
def lua_script(name: str) -> str:
    """The source of scripts/<name>.lua, its includes pasted in."""
    source = (SCRIPTS / f"{name}.lua").read_text(encoding="utf-8")
    return INCLUDE.sub(lambda found: lua_script(found.group(1)).rstrip("\n"), source)
