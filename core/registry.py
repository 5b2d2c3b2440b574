"""Versioned model directories: <root>/<name>/<version>/ plus a `current` pointer per name.

Publishing copies a model folder into a new version (never overwrites one) and makes it current.
The pointer is a small text file replaced atomically (os.replace), so a reader sees either the
old or the new version, never a half-written one; a version directory appears only when fully
copied. Versions sort naturally ("v2" before "v10"); `rollback` moves the pointer to the version
before the current one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from threefold.core.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

POINTER_FILE = "current"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelRegistry:
    """Versioned model directories <root>/<name>/<version>/ with a `current` pointer per name."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def publish(
        self, name: str, source_dir: str | os.PathLike[str], *, version: str | None = None
    ) -> str:
        """Copy `source_dir` in as a new version of `name`, make it current; returns the version."""
        _check_name("model name", name)
        source = Path(source_dir)
        if not source.is_dir():
            raise ModelError(
                f"cannot publish {name!r}: {str(source)!r} is not a directory. "
                "Fix: save the model first and pass its folder."
            )
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        if version is None:
            version = self._next_version(name)
        _check_name("version", version)
        if version == POINTER_FILE:
            raise ConfigError(f"version may not be called {POINTER_FILE!r}; pick another name.")
        target = folder / version
        if target.exists():
            raise ConfigError(
                f"{name!r} version {version!r} already exists at {target}; versions are never "
                "overwritten. Fix: pick a new version, or leave it unset for the next one."
            )
        staging = Path(tempfile.mkdtemp(prefix=f".publish-{version}-", dir=folder))
        try:
            shutil.copytree(source, staging / "model")
            os.replace(staging / "model", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._write_pointer(name, version)
        logger.info("published %s version %s from %s", name, version, source)
        return version

    def versions(self, name: str) -> list[str]:
        """Published versions of `name`, oldest first (natural order); [] when none."""
        _check_name("model name", name)
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=_natural_key)

    def current(self, name: str) -> Path:
        """Directory of the current version of `name`; ModelError when there is none."""
        version = self.current_version(name)
        return self.root / name / version

    def current_version(self, name: str) -> str:
        """The version the `current` pointer names; ModelError when there is none."""
        _check_name("model name", name)
        pointer = self.root / name / POINTER_FILE
        if not pointer.is_file():
            raise ModelError(
                f"no current version of {name!r} in registry {self.root} (no {pointer}). "
                f"Fix: publish one with ModelRegistry({str(self.root)!r}).publish({name!r}, DIR)."
            )
        version = pointer.read_text(encoding="utf-8").strip()
        if not version or not (self.root / name / version).is_dir():
            raise ModelError(
                f"{pointer} names version {version!r}, which does not exist; available: "
                f"{self.versions(name)}. Fix: set_current({name!r}, VERSION) to one of those."
            )
        return version

    def set_current(self, name: str, version: str) -> None:
        """Point `name` at an existing version."""
        available = self.versions(name)
        if version not in available:
            raise ModelError(
                f"{name!r} has no version {version!r}; available: {available}. "
                "Fix: pick one of those, or publish it first."
            )
        self._write_pointer(name, version)
        logger.info("set current %s version to %s", name, version)

    def rollback(self, name: str) -> str:
        """Move `name` back to the version before the current one; returns that version."""
        current = self.current_version(name)
        available = self.versions(name)
        position = available.index(current)
        if position == 0:
            raise ModelError(
                f"cannot roll back {name!r}: current version {current!r} is the oldest of "
                f"{available}. Fix: set_current to a specific version instead."
            )
        previous = available[position - 1]
        self._write_pointer(name, previous)
        logger.info("rolled back %s from %s to %s", name, current, previous)
        return previous

    def _next_version(self, name: str) -> str:
        numbers = [int(v[1:]) for v in self.versions(name) if re.fullmatch(r"v\d+", v)]
        return f"v{max(numbers, default=0) + 1}"

    def _write_pointer(self, name: str, version: str) -> None:
        folder = self.root / name
        fd, tmp = tempfile.mkstemp(prefix=".current-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(version + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / POINTER_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{what} {value!r} is not usable as a folder name; expected letters, digits, '.', "
            "'_' or '-', starting with a letter or digit."
        )


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]
