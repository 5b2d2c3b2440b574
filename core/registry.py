"""Named models in immutable versions, with a current pointer each: publish, promote, roll back.

A registry ROOT holds one folder per named model (an *entry*):

    ROOT/<name>/state.json            {"current": ..., "history": [...every version activated]}
    ROOT/<name>/versions/<version>/   the model's files + version.json (who, when, from what)

`VersionedFolders` is the mechanism: each version is written aside and renamed into place (it
appears only when complete and is never overwritten); the state file is replaced atomically
(os.replace), so a reader sees either the old or the new version. Rollback re-activates the
version activated before the current one. Writers are serialized across processes with flock.

`ModelEntry` is one named model with registry metadata per version (created at/by, parent,
training-data fingerprint, metrics, the gate's decision); `ModelRegistry` is the folder of
entries. A QA bot directory is an entry; so are the alert classifiers and the recs ranker.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError, ModelError
from threefold.core.files import (
    permission_problem,
    removed_on_error,
    share_as_umask_allows,
    staging_dir,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
VERSIONS_DIR = "versions"
VERSION_META = "version.json"
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

    def pointer(self) -> str | None:
        """The version the state file names as current, whether or not its folder exists."""
        return self._state()["current"]

    def current_version(self) -> str | None:
        """The current version; None before the first one; ModelError when it has gone."""
        version = self.pointer()
        if version is not None and not self.path(version).is_dir():
            entry = self.state_path.parent
            raise ModelError(
                f"{self.state_path} names version {version!r}, which does not exist; available: "
                f"{self.versions()}. Fix: promote one of those: `threefold models promote "
                f"{entry.name} VERSION --registry {entry.parent}`"
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
            with removed_on_error(staging_dir(target)) as staging:
                write(staging, version)
                share_as_umask_allows(staging)  # libraries save owner-only files
                os.rename(staging, target)
            if activate:
                self._activate(version)
            self._prune()
        logger.info("published %s version %s in %s", self.label, version, self.versions_dir)
        return version

    def prune(self, keep: int) -> list[str]:
        """Delete all but the `keep` newest versions and the current one; returns the removed."""
        if keep < 1:
            raise ConfigError(f"keep must be >= 1, found {keep}")
        with self._locked():
            return self._prune_to(keep)

    def _prune(self) -> None:
        if self.keep is not None:
            self._prune_to(self.keep)

    def _prune_to(self, keep_newest: int) -> list[str]:
        """Delete versions beyond the newest (never the current); drop them from history."""
        versions = self.versions()
        state = self._state()
        keep = {*versions[-keep_newest:], state["current"]}
        removed = [v for v in versions if v not in keep]
        if not removed:
            return []
        history = [v for v in state["history"] if v in keep]
        write_json_atomic(self.state_path, {"current": state["current"], "history": history})
        for version in removed:
            shutil.rmtree(self.path(version), ignore_errors=True)
        logger.info("pruned %s versions %s (keeping %d)", self.label, removed, keep_newest)
        return removed

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
            if not self.path(previous).is_dir():
                raise ModelError(
                    f"cannot roll back to {self.label} version {previous!r} (current before "
                    f"{history[-1]!r}): its folder {self.path(previous)} no longer exists. Fix: "
                    f"promote one of the versions there instead: {self.versions()}"
                )
            write_json_atomic(self.state_path, {"current": previous, "history": history[:-1]})
        logger.info("rolled back %s to version %s", self.label, previous)
        return previous

    def _activate(self, version: str) -> None:
        history = [*self.history(), version]
        write_json_atomic(self.state_path, {"current": version, "history": history})

    def _state(self) -> dict[str, Any]:
        try:
            if not self.state_path.is_file():
                return {"current": None, "history": []}
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except PermissionError as exc:
            raise ModelError(permission_problem(self.state_path)) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            state = None
        if isinstance(state, dict) and _is_state(state):
            return state
        raise ModelError(
            f"{self.state_path} is not a version state file (expected JSON like "
            '{"current": "v2", "history": ["v1", "v2"]}). Fix: restore it, or delete it and '
            "promote a version again."
        )

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


class ModelEntry:
    """One named model: immutable versions under `path/versions/`, the pointer in `state.json`.

    Args:
        path: the entry's folder (ROOT/<name>); its folder name is the model's name.
        label: what the versions are, for messages (default "model '<name>'").
        keep: after each publish, delete all but the `keep` newest versions and the current one.
        next_version: names a new version from the existing ones (default v1, v2, ...).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        label: str | None = None,
        keep: int | None = None,
        next_version: Callable[[list[str]], str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.folders = VersionedFolders(
            self.path / VERSIONS_DIR,
            self.path / STATE_FILE,
            label=label or f"model {self.name!r}",
            next_version=next_version or _next_v_number,
            keep=keep,
        )

    def __repr__(self) -> str:
        return f"ModelEntry({str(self.path)!r})"

    @staticmethod
    def is_entry(path: str | os.PathLike[str]) -> bool:
        """True when `path` is a registry entry (a state file or a versions folder)."""
        path = Path(path)
        return (path / STATE_FILE).is_file() or (path / VERSIONS_DIR).is_dir()

    def versions(self) -> list[str]:
        """Published versions, oldest first (natural order: "v2" before "v10")."""
        return self.folders.versions()

    def history(self) -> list[str]:
        """Every version activated so far, oldest first; the last one is current."""
        return self.folders.history()

    def current_version(self) -> str | None:
        """The current version; None before the first one is activated; ModelError when the
        state file names a version whose folder has gone (`pointer` still says which)."""
        return self.folders.current_version()

    def pointer(self) -> str | None:
        """The version `state.json` names as current, whether or not its folder exists."""
        return self.folders.pointer()

    def version_dir(self, version: str) -> Path:
        return self.folders.path(version)

    def current_dir(self) -> Path:
        """The current version's folder; ModelError (with the fix) when there is none."""
        version = self.current_version()
        if version is None:
            raise ModelError(
                f"no current version of {self.name!r} in {self.path} "
                f"(versions: {self.versions()}). Fix: publish one (train or build with this "
                f"folder as the output) or promote one with `threefold models promote "
                f"{self.name} VERSION --registry {self.path.parent}`."
            )
        return self.version_dir(version)

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """A cheap change detector for watchers: the state file's (inode, mtime_ns, size)."""
        try:
            stat = (self.path / STATE_FILE).stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def publish(
        self,
        write: Callable[[Path, str], None],
        *,
        metadata: dict[str, Any] | None = None,
        activate: bool = True,
        version: str | None = None,
    ) -> str:
        """Add a version that `write(folder, version)` fills; `version.json` records its origin.

        The metadata gets `name`, `version`, `created_at` (ISO UTC), `created_by` (default:
        the OS user) and `parent` (the version current when it was published) unless given.
        """
        if version is not None:
            _check_name("version", version)
        parent = self.current_version()

        def write_with_metadata(folder: Path, name: str) -> None:
            write(folder, name)
            meta = {
                "name": self.name,
                "version": name,
                "created_at": _now_iso(),
                "created_by": _os_user(),
                "parent": parent,
                "data_fingerprint": None,
                "metrics": {},
                **(metadata or {}),
            }
            meta["version"] = name
            write_json_atomic(folder / VERSION_META, meta)

        return self.folders.publish(write_with_metadata, version=version, activate=activate)

    def publish_dir(
        self,
        source: str | os.PathLike[str],
        *,
        metadata: dict[str, Any] | None = None,
        activate: bool = True,
        version: str | None = None,
    ) -> str:
        """Copy a saved model folder in as a new version (see `publish`)."""
        source = Path(source)
        if not source.is_dir():
            raise ModelError(
                f"cannot publish {self.name!r}: {str(source)!r} is not a directory. "
                "Fix: save the model first and pass its folder."
            )

        def copy(folder: Path, _version: str) -> None:
            shutil.copytree(source, folder, dirs_exist_ok=True)

        return self.publish(copy, metadata=metadata, activate=activate, version=version)

    def info(self, version: str) -> dict[str, Any]:
        """The version's metadata with its `status`: current, previous, rejected or candidate."""
        if version not in self.versions():  # also keeps '../..' out of the versions folder
            raise ModelError(
                f"{self.name!r} has no version {version!r}; versions: {self.versions()}"
            )
        folder = self.version_dir(version)
        meta: dict[str, Any] = {"name": self.name, "version": version}
        meta_path = folder / VERSION_META
        if meta_path.is_file():
            try:
                loaded = json.loads(meta_path.read_text(encoding="utf-8"))
            except PermissionError:
                loaded = {"metadata_error": permission_problem(meta_path)}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                loaded = {
                    "metadata_error": f"{meta_path} is not readable JSON ({exc}). Fix: restore "
                    "it from a backup, or publish the model again as a new version"
                }
            if isinstance(loaded, dict):
                meta.update(loaded)
        meta["status"] = self._status(version, meta)
        return meta

    def _status(self, version: str, meta: dict[str, Any]) -> str:
        if version == self.pointer():  # also when the current version's folder has gone
            return "current"
        if version in self.history():
            return "previous"
        gate = meta.get("gate")
        if isinstance(gate, dict) and gate.get("promoted") is False:
            return "rejected"
        return "candidate"

    def infos(self) -> list[dict[str, Any]]:
        """Every version's `info`, oldest first."""
        return [self.info(version) for version in self.versions()]

    def promote(self, version: str, *, by: str | None = None) -> None:
        """Make an existing version current (a rejected one too: an operator's decision)."""
        available = self.versions()
        if version not in available:
            raise ModelError(
                f"{self.name!r} has no version {version!r}; available: {available}. "
                "Fix: pick one of those, or publish it first."
            )
        self.folders.activate(version)
        logger.info(
            "promoted %s version %s by %s",
            self.name,
            version,
            by or _os_user(),
            extra={"model": self.name, "version": version},
        )

    def rollback(self) -> str:
        """Re-activate the version that was current before this one; returns it."""
        return self.folders.rollback()

    def prune(self, keep: int) -> list[str]:
        """Delete all but the `keep` newest versions and the current one; returns the removed."""
        return self.folders.prune(keep)


class ModelRegistry:
    """A folder of named models: ROOT/<name> is a `ModelEntry`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def entry(self, name: str) -> ModelEntry:
        _check_name("model name", name)
        return ModelEntry(self.root / name)

    def names(self) -> list[str]:
        """The models in this registry, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and ModelEntry.is_entry(p)
        )

    def publish(
        self,
        name: str,
        source_dir: str | os.PathLike[str],
        *,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
        activate: bool = True,
    ) -> str:
        """Copy `source_dir` in as a new version of `name` (current unless activate=False)."""
        return self.entry(name).publish_dir(
            source_dir, version=version, metadata=metadata, activate=activate
        )

    def versions(self, name: str) -> list[str]:
        return self.entry(name).versions()

    def current(self, name: str) -> Path:
        """The folder of the current version of `name`; ModelError when there is none."""
        return self.entry(name).current_dir()

    def current_version(self, name: str) -> str:
        """The current version of `name`; ModelError when there is none."""
        return self.current(name).name

    def set_current(self, name: str, version: str) -> None:
        """Point `name` at an existing version."""
        self.entry(name).promote(version)

    def rollback(self, name: str) -> str:
        """Move `name` back to the version current before this one; returns that version."""
        return self.entry(name).rollback()


def check_entry_holds(path: str | os.PathLike[str], markers: Iterable[str], what: str) -> None:
    """ModelError when `path` is a registry entry whose current version has none of `markers`.

    Publishing `what` into an entry that serves another kind of model (an alerts model into a
    QA bot folder) would make every app following that entry load the wrong model.
    """
    if not ModelEntry.is_entry(path):
        return
    entry = ModelEntry(path)
    version = entry.current_version()
    if version is None:
        return
    folder = entry.version_dir(version)
    markers = list(markers)
    if any((folder / marker).exists() for marker in markers):
        return
    found = sorted(p.name for p in folder.iterdir() if p.name != VERSION_META)[:8]
    raise ModelError(
        f"{entry.path} is a registry entry whose current version {version!r} is not {what} "
        f"(expected one of {markers}, found {found}); publishing here would replace the model "
        "it serves. Fix: choose another output folder, or --registry ROOT"
    )


def entry_around(path: str | os.PathLike[str]) -> ModelEntry | None:
    """The registry entry that `path` is, or whose versions folder `path` is or lies in (a
    symlink resolved); None for any other folder. Replacing such a folder as a whole would
    delete versions that apps serve or roll back to."""
    real = Path(os.path.realpath(path))
    if ModelEntry.is_entry(real):
        return ModelEntry(real)
    for folder in [real, *real.parents]:
        if folder.name == VERSIONS_DIR and (folder.parent / STATE_FILE).is_file():
            return ModelEntry(folder.parent)
    return None


def data_fingerprint(*parts: str | bytes | os.PathLike[str] | Iterable[Any]) -> str:
    """A short sha256 over files' bytes (paths), strings, bytes and iterables of those."""
    digest = hashlib.sha256()

    def feed(part: Any) -> None:
        if isinstance(part, bytes):
            digest.update(part)
        elif isinstance(part, os.PathLike):
            path = Path(part)
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        elif isinstance(part, str):
            digest.update(part.encode("utf-8"))
        else:
            for item in part:
                feed(item)
        digest.update(b"\x00")

    for part in parts:
        feed(part)
    return digest.hexdigest()[:16]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _next_v_number(existing: list[str]) -> str:
    numbers = [int(v[1:]) for v in existing if re.fullmatch(r"v\d+", v)]
    return f"v{max(numbers, default=0) + 1}"


def _is_state(state: dict[str, Any]) -> bool:
    """True when `state` names a current version (or None) and lists a history of versions."""
    current, history = state.get("current", ""), state.get("history")

    def is_version(value: object) -> bool:
        return isinstance(value, str) and bool(_NAME.match(value))

    return (current is None or is_version(current)) and (
        isinstance(history, list) and all(is_version(v) for v in history)
    )


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{what} {value!r} is not usable as a folder name; expected letters, digits, '.', "
            "'_' or '-', starting with a letter or digit."
        )


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]
