"""Pin the image's dependencies to the tested virtualenv: writes deploy/constraints.txt.

Run by `make lock` with the virtualenv's Python, after the suite passed in that virtualenv.
Pinned: every runtime dependency of pyproject.toml and of the extras the image installs
(IMAGE_EXTRAS), with their dependencies, at the versions installed here. Not pinned: torch
(TORCH_SPEC picks its build) and what only torch brings, nor the CUDA libraries a CUDA build of
torch or faiss-gpu brings (nvidia-*, cuda-*, triton): a CUDA torch pins those exactly itself,
so a pin here would clash with some TORCH_SPEC. faiss-gpu, not installed on a CPU machine,
takes the version of faiss-cpu (the same faiss release). The virtualenv is marked as the lock's
reference: tests/deploy then fail when it and the lock differ.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "deploy" / "constraints.txt"
# The extras deploy/Dockerfile may install (its EXTRAS build argument); bench and dev never.
IMAGE_EXTRAS = ("serve", "gpu")
# Owned by TORCH_SPEC: torch and the CUDA libraries of a CUDA build (of torch or faiss-gpu).
UNPINNED = re.compile(r"torch|triton|pytorch-triton(-.+)?|nvidia-.+|cuda-.+")
# Two wheels of one release: the one not installed here takes the other's version.
TWINS = {"faiss-gpu": "faiss-cpu", "faiss-cpu": "faiss-gpu"}
# Written into the virtualenv (sys.prefix) that the lock was taken from.
REFERENCE_MARKER = ".threefold-lock-reference"
PIN_LINE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
HEADER_LINE = re.compile(r"# (?P<key>python|torch): (?P<value>\S+)")


class LockError(Exception):
    """The lock cannot be written or read; the message says what to do."""


@dataclass(frozen=True)
class Lock:
    """What deploy/constraints.txt holds: its pins and the environment they were taken from."""

    pins: dict[str, str]  # canonical name -> exact version
    python: str  # "3.11": environment markers were evaluated for this Python
    torch: str  # the torch the suite passed with (not pinned: TORCH_SPEC)


def is_unpinned(name: str) -> bool:
    """True for torch and the CUDA libraries, which TORCH_SPEC owns."""
    return UNPINNED.fullmatch(canonicalize_name(name)) is not None


def declared_requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """pyproject.toml's runtime dependencies and those of IMAGE_EXTRAS."""
    if tomllib is None:
        raise LockError("reading pyproject.toml needs Python 3.11+ (tomllib); found " + sys.version)
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    missing = [extra for extra in IMAGE_EXTRAS if extra not in extras]
    if missing:
        raise LockError(f"pyproject.toml has no extra {missing}: fix IMAGE_EXTRAS in {__file__}")
    declared = list(project["dependencies"]) + [r for e in IMAGE_EXTRAS for r in extras[e]]
    return [Requirement(text) for text in declared]


def active_requirements(distribution: str, extras: Iterable[str]) -> Iterator[Requirement]:
    """The installed distribution's requirements that apply here with these extras."""
    environments = [{"extra": extra} for extra in ("", *extras)]
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate(env) for env in environments):
            yield requirement


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_pins(requirements: Iterable[Requirement]) -> dict[str, str]:
    """Every package the requirements need, transitively, at its installed version."""
    pins: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = [(requirement, "pyproject.toml") for requirement in requirements]
    while pending:
        requirement, wanted_by = pending.pop()
        name = canonicalize_name(requirement.name)
        if is_unpinned(name):
            continue
        extras = {canonicalize_name(extra) for extra in requirement.extras}
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        extras_seen.setdefault(name, set()).update(extras)
        source = name
        version = installed_version(name)
        if version is None and installed_version(TWINS.get(name, name)) is not None:
            source = TWINS[name]
            version = installed_version(source)
        if version is None:
            raise LockError(
                f"{name} (required by {wanted_by}) is not installed in {sys.prefix}: lock from "
                "the virtualenv the suite passed in (`make venv`, then `make lock`)"
            )
        pins[name] = version
        pending.extend(
            (child, f"{name} {version}") for child in active_requirements(source, extras_seen[name])
        )
    return dict(sorted(pins.items()))


def current_lock() -> Lock:
    """The lock this Python's environment gives."""
    torch = installed_version("torch")
    if torch is None:
        raise LockError(f"torch is not installed in {sys.prefix}: run `make venv` first")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Lock(resolve_pins(declared_requirements()), python=python, torch=torch)


def render(lock: Lock) -> str:
    header = f"""\
# Exact versions of the image's dependencies, from the virtualenv the test suite passed in.
# Written by `make lock` (deploy/lock.py): do not edit by hand. deploy/Dockerfile installs
# with `pip install -c deploy/constraints.txt`; deploy/OPERATIONS.md says when to regenerate.
# Not pinned: torch (TORCH_SPEC) and the CUDA libraries of a CUDA build (nvidia-*, cuda-*,
# triton). faiss-gpu (the gpu extra) takes faiss-cpu's version: the same faiss release.
# Environment markers were evaluated for this Python; the suite passed with this torch:
# python: {lock.python}
# torch: {lock.torch}
"""
    return header + "".join(f"{name}=={version}\n" for name, version in lock.pins.items())


def parse(text: str, source: Path = LOCK) -> Lock:
    """The pins and header of a lock file; a line that is neither says where and why."""
    pins: dict[str, str] = {}
    header: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if match := HEADER_LINE.fullmatch(stripped):
            header[match["key"]] = match["value"]
        elif stripped.startswith("#"):
            continue
        elif match := PIN_LINE.fullmatch(stripped):
            name = canonicalize_name(match["name"])
            if name in pins:
                raise LockError(f"{source}:{number}: {name} is pinned twice")
            pins[name] = match["version"]
        else:
            raise LockError(
                f"{source}:{number}: expected `name==version`, found {stripped!r}: "
                "regenerate the file with `make lock`"
            )
    missing = {"python", "torch"} - header.keys()
    if missing:
        raise LockError(f"{source}: no `# {sorted(missing)[0]}: ...` line: run `make lock`")
    return Lock(pins, python=header["python"], torch=header["torch"])


def read(path: Path = LOCK) -> Lock:
    if not path.is_file():
        raise LockError(f"{path} does not exist: run `make lock`")
    return parse(path.read_text(), path)


def main() -> int:
    try:
        lock = current_lock()
    except LockError as error:
        print(f"lock: {error}", file=sys.stderr)
        return 1
    LOCK.write_text(render(lock))
    (Path(sys.prefix) / REFERENCE_MARKER).write_text(
        f"{LOCK} was taken from this virtualenv: tests/deploy fail when they differ.\n"
        "Delete this file to report a difference as a skip instead.\n"
    )
    print(
        f"lock: {len(lock.pins)} pins (python {lock.python}, torch {lock.torch}) -> {LOCK}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
