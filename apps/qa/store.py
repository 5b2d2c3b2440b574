"""Bots on disk: versioned directories with an atomically switched `current` pointer.

Layout of a bot directory (what `threefold qa build --out DIR` writes):

    DIR/state.json              {"current": "<version>", "history": [...activated versions]}
    DIR/versions/<version>/     bot.json (build info + calibration), kb.json, index/ (FAISS),
                                embedder/ (only when the build fine-tuned the embedder)

A version is written to a temporary folder and renamed into place, then state.json is replaced
with os.replace, so a reader (another process, or `reload`) sees either the old or the new
version, never a half-written one. Rollback re-activates the version activated before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from threefold.apps.qa.bot import Bot, BotInfo
from threefold.apps.qa.calibration import Calibrator
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.core.errors import ModelError

logger = logging.getLogger(__name__)

FORMAT_NAME = "threefold-qa-bot"
FORMAT_VERSION = 1
STATE_FILE = "state.json"
VERSIONS_DIR = "versions"


class BotStore:
    """Publish, load, activate and roll back bot versions under one root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        if not path.is_file():
            return {"current": None, "history": []}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"{path} is not readable JSON ({exc}). Fix: rebuild the bot with "
                "`threefold qa build`, or restore the file"
            ) from exc
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".state-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / STATE_FILE)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize writers within the process (thread lock) and across processes (flock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def exists(self) -> bool:
        return self._state()["current"] is not None

    def current_version(self) -> str | None:
        return self._state()["current"]

    def history(self) -> list[str]:
        return list(self._state()["history"])

    def versions(self) -> list[str]:
        folder = self.root / VERSIONS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def version_dir(self, version: str) -> Path:
        return self.root / VERSIONS_DIR / version

    # ---------------------------------------------------------------- writing
    def publish(self, bot: Bot, *, activate: bool = True) -> str:
        """Write `bot` as a new version (and make it current); sets and returns its version."""
        with self._locked():
            existing = self.versions()
            number = 1 + max((int(v.split("-")[0]) for v in existing if v[:4].isdigit()), default=0)
            version = f"{number:04d}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            versions_dir = self.root / VERSIONS_DIR
            versions_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=versions_dir, prefix=f".{version}-"))
            try:
                bot.info.version = version
                self._write_version(bot, staging)
                os.rename(staging, versions_dir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if activate:
                state = self._state()
                self._write_state({"current": version, "history": [*state["history"], version]})
        logger.info("published bot version %s to %s", version, self.root)
        return version

    def _write_version(self, bot: Bot, folder: Path) -> None:
        bot.kb.save(folder / "kb.json")
        bot.index.save(folder / "index")
        ref = bot.info.embedder
        if ref.get("source") == "saved":
            parent_copy = (
                self.version_dir(bot.info.parent) / ref["path"] if bot.info.parent else None
            )
            if parent_copy is not None and parent_copy.is_dir():
                _link_tree(parent_copy, folder / ref["path"])
            else:
                bot.embedder.save(folder / ref["path"])
        doc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "info": asdict(bot.info),
            "calibration": bot.calibrator.to_dict(),
        }
        (folder / "bot.json").write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")

    def activate(self, version: str) -> None:
        """Make an existing version current (appended to the history)."""
        with self._locked():
            if not self.version_dir(version).is_dir():
                raise ModelError(
                    f"bot version {version!r} does not exist in {self.root}; "
                    f"versions: {self.versions()}"
                )
            state = self._state()
            self._write_state({"current": version, "history": [*state["history"], version]})

    def rollback(self) -> str:
        """Re-activate the version that was current before the current one; returns it."""
        with self._locked():
            state = self._state()
            history = list(state["history"])
            if len(history) < 2:
                raise ModelError(
                    f"nothing to roll back to in {self.root}: only {history} was ever activated"
                )
            history.pop()
            previous = history[-1]
            self._write_state({"current": previous, "history": history})
        logger.info("rolled back bot in %s to %s", self.root, previous)
        return previous

    # ---------------------------------------------------------------- reading
    def load(self, version: str | None = None, *, embedder: Any = None) -> Bot:
        """Load a version (default: the current one).

        `embedder`: an already loaded Embedder to reuse when the bot was built with the same
        model (same model_id); otherwise the bot's own embedder is loaded.
        """
        from threefold.core.index import FaissIndex

        version = version or self.current_version()
        if version is None:
            raise ModelError(
                f"no bot in {self.root} (no {STATE_FILE}). Fix: build one with "
                "`threefold qa build --kb KB.csv --out DIR`"
            )
        folder = self.version_dir(version)
        meta_path = folder / "bot.json"
        if not meta_path.is_file():
            raise ModelError(f"bot version {version!r} in {self.root} has no bot.json")
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT_NAME:
            raise ModelError(
                f"{meta_path} is not a threefold QA bot (format {doc.get('format')!r})"
            )
        info = BotInfo(**doc["info"])
        info.version = version
        kb = KnowledgeBase.load(folder / "kb.json")
        index = FaissIndex.load(folder / "index")
        model = self._embedder_for(info, folder, embedder)
        calibrator = Calibrator.from_dict(doc["calibration"])
        return Bot(kb=kb, index=index, embedder=model, calibrator=calibrator, info=info)

    @staticmethod
    def _embedder_for(info: BotInfo, folder: Path, embedder: Any) -> Any:
        from threefold.core.embedder import Embedder

        ref = info.embedder
        expected = _weights_id(ref.get("model_id", ""))
        if embedder is not None and _weights_id(embedder.model_id) == expected:
            return embedder
        if ref.get("source") == "saved":
            loaded = Embedder.from_dir(folder / ref["path"])
        else:
            loaded = Embedder(ref.get("model"), max_length=int(ref.get("max_length", 256))).load()
        if _weights_id(loaded.model_id) != expected:
            raise ModelError(
                f"bot {info.version!r} was built with embedder {ref.get('model_id')!r} but "
                f"{loaded.model_id!r} was loaded; its vectors would not match. Fix: rebuild the "
                "bot with the current model"
            )
        return loaded


def _weights_id(model_id: str) -> str:
    """The part of an Embedder.model_id that identifies the weights (`name@<fingerprint>-...`):
    a saved copy of a model has another folder name but the same weights."""
    return model_id.rpartition("@")[2]


def _link_tree(source: Path, target: Path) -> None:
    """Copy a folder using hard links where possible (unchanged model weights cost no space)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
