"""Versioned folders with a `current` pointer: publish, activate, roll back.

`VersionedFolders` is the one helper: each version is a folder under `versions_dir`, written
aside and renamed into place (it appears only when complete, and is never overwritten); a small
JSON state file `{"current": ..., "history": [...]}` names the current version and every version
activated so far, and is replaced atomically (os.replace), so a reader sees either the old or
the new version. Rollback re-activates the version activated before the current one. Writers
are serialized across threads and processes with flock.

`ModelRegistry` keeps named models this way: <root>/<name>/<version>/ and <root>/<name>/current.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError, ModelError
from threefold.core.files import write_json_atomic

logger = logging.getLogger(__name__)

POINTER_FILE = "current"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class VersionedFolders:
    """Immutable version folders under `versions_dir` and a state file naming the current one.

    Args:
        label: what the versions are, for messages ("bot", "model 'clf'").
        next_version: names a new version from the existing ones (oldest first).
        keep: after each publish, delete all but the `keep` newest versions and the current one
            (None keeps every version). Rollback then reaches only the versions kept.
    """

    def __init__(
        self,
        versions_dir: Path,
        state_path: Path,
        *,
        label: str,
        next_version: Callable[[list[str]], str],
        keep: int | None = None,
    ) -> None:
        if keep is not None and keep < 1:
            raise ConfigError(f"keep must be >= 1 (or None to keep every version), found {keep}")
        self.versions_dir = versions_dir
        self.state_path = state_path
        self.label = label
        self.next_version = next_version
        self.keep = keep

    def versions(self) -> list[str]:
        """Published versions, oldest first (natural order: "v2" before "v10"); [] when none."""
        if not self.versions_dir.is_dir():
            return []
        found = [
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        ]
        return sorted(found, key=_natural_key)

    def path(self, version: str) -> Path:
        return self.versions_dir / version

    def history(self) -> list[str]:
        """Every version activated so far, oldest first; the last one is current."""
        return list(self._state()["history"])

    def current_version(self) -> str | None:
        """The current version; None before the first one; ModelError when it has gone."""
        version = self._state()["current"]
        if version is not None and not self.path(version).is_dir():
            raise ModelError(
                f"{self.state_path} names version {version!r}, which does not exist; available: "
                f"{self.versions()}. Fix: activate one of those."
            )
        return version

    def publish(
        self,
        write: Callable[[Path, str], None],
        *,
        version: str | None = None,
        activate: bool = True,
    ) -> str:
        """Add a version: `write(folder, version)` fills it, then it is renamed into place."""
        with self._locked():
            if version is None:
                version = self.next_version(self.versions())
            target = self.path(version)
            if target.exists():
                raise ConfigError(
                    f"{self.label} version {version!r} already exists at {target}; versions are "
                    "never overwritten. Fix: pick a new version, or leave it unset for the next "
                    "one."
                )
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=f".{version}-"))
            try:
                write(staging, version)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if activate:
                self._activate(version)
            self._prune()
        logger.info("published %s version %s in %s", self.label, version, self.versions_dir)
        return version

    def _prune(self) -> None:
        """Delete versions beyond the `keep` newest (never the current); drop them from history."""
        if self.keep is None:
            return
        versions = self.versions()
        state = self._state()
        keep = {*versions[-self.keep :], state["current"]}
        removed = [v for v in versions if v not in keep]
        if not removed:
            return
        history = [v for v in state["history"] if v in keep]
        write_json_atomic(self.state_path, {"current": state["current"], "history": history})
        for version in removed:
            shutil.rmtree(self.path(version), ignore_errors=True)
        logger.info("pruned %s versions %s (keeping %d)", self.label, removed, self.keep)

    def activate(self, version: str) -> None:
        """Make an existing version current (appended to the history)."""
        with self._locked():
            if not self.path(version).is_dir():
                raise ModelError(
                    f"{self.label} version {version!r} does not exist in {self.versions_dir}; "
                    f"versions: {self.versions()}"
                )
            self._activate(version)
        logger.info("activated %s version %s", self.label, version)

    def rollback(self) -> str:
        """Re-activate the version that was current before the current one; returns it."""
        with self._locked():
            history = self.history()
            if len(history) < 2:
                raise ModelError(
                    f"nothing to roll back to in {self.versions_dir}: only {history} was ever "
                    "activated (the current version is the oldest one)"
                )
            previous = history[-2]
            write_json_atomic(self.state_path, {"current": previous, "history": history[:-1]})
        logger.info("rolled back %s to version %s", self.label, previous)
        return previous

    def _activate(self, version: str) -> None:
        history = [*self.history(), version]
        write_json_atomic(self.state_path, {"current": version, "history": history})

    def _state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"current": None, "history": []}
        text = self.state_path.read_text(encoding="utf-8")
        try:
            state = json.loads(text)
        except json.JSONDecodeError:
            state = None
        if isinstance(state, dict) and isinstance(state.get("history"), list):
            return state
        # A plain pointer holding one version name (how ModelRegistry wrote `current` before).
        version = text.strip()
        return {"current": version, "history": [version]}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize writers across threads and processes (flock on the state's folder)."""
        folder = self.state_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class ModelRegistry:
    """Versioned model directories <root>/<name>/<version>/ with a `current` pointer per name."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def _folders(self, name: str) -> VersionedFolders:
        _check_name("model name", name)
        folder = self.root / name
        return VersionedFolders(
            folder, folder / POINTER_FILE, label=f"model {name!r}", next_version=_next_v_number
        )

    def publish(
        self, name: str, source_dir: str | os.PathLike[str], *, version: str | None = None
    ) -> str:
        """Copy `source_dir` in as a new version of `name`, make it current; returns the version."""
        folders = self._folders(name)
        source = Path(source_dir)
        if not source.is_dir():
            raise ModelError(
                f"cannot publish {name!r}: {str(source)!r} is not a directory. "
                "Fix: save the model first and pass its folder."
            )
        if version is not None:
            _check_name("version", version)
            if version == POINTER_FILE:
                raise ConfigError(f"version may not be called {POINTER_FILE!r}; pick another name.")

        def copy(folder: Path, _version: str) -> None:
            shutil.copytree(source, folder, dirs_exist_ok=True)

        return folders.publish(copy, version=version)

    def versions(self, name: str) -> list[str]:
        """Published versions of `name`, oldest first (natural order); [] when none."""
        return self._folders(name).versions()

    def current(self, name: str) -> Path:
        """Directory of the current version of `name`; ModelError when there is none."""
        return self.root / name / self.current_version(name)

    def current_version(self, name: str) -> str:
        """The version the `current` pointer names; ModelError when there is none."""
        version = self._folders(name).current_version()
        if version is None:
            raise ModelError(
                f"no current version of {name!r} in registry {self.root} "
                f"(no {self.root / name / POINTER_FILE}). "
                f"Fix: publish one with ModelRegistry({str(self.root)!r}).publish({name!r}, DIR)."
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
        self._folders(name).activate(version)

    def rollback(self, name: str) -> str:
        """Move `name` back to the version current before this one; returns that version."""
        return self._folders(name).rollback()


def _next_v_number(existing: list[str]) -> str:
    numbers = [int(v[1:]) for v in existing if re.fullmatch(r"v\d+", v)]
    return f"v{max(numbers, default=0) + 1}"


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{what} {value!r} is not usable as a folder name; expected letters, digits, '.', "
            "'_' or '-', starting with a letter or digit."
        )


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]
