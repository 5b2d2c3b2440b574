"""Reading deploy/Dockerfile without a container engine: its instructions and stages."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def dockerfile_global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The defaults of the ARGs declared before the first FROM."""
    found = {}
    for instruction, args in dockerfile_instructions(path):
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = args.partition("=")
            found[name] = default.strip('"')
    return found


def dockerfile_stages(path: Path = DOCKERFILE) -> list[dict]:
    """Each stage: {"base": image with global ARGs expanded, "name", "steps": [(INSTR, args)]}."""
    stages, global_args = [], dockerfile_global_args(path)
    for instruction, args in dockerfile_instructions(path):
        if instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), ""), match[1])
            stages.append({"base": base, "name": match[2], "steps": []})
        elif stages:
            stages[-1]["steps"].append((instruction, args))
    return stages
