"""Bots on disk: a bot directory is a `core.registry.ModelEntry` (versions + current pointer).

Layout of a bot directory (what `threefold qa build --out DIR` writes):

    DIR/state.json              {"current": "<version>", "history": [...activated versions]}
    DIR/versions/<version>/     bot.json (build info + calibration + intent fusion), kb.json,
                                index/ (FAISS), intent/ (the intent head, when built with one),
                                embedder/ (only when the build fine-tuned the embedder),
                                version.json (registry metadata: created by/at, parent, the
                                KB's fingerprint, metrics and the gate's decision when gated)

So `threefold models list --registry <parent of DIR>` lists the bot's versions; bot directories
written before version.json existed load as before (their versions simply carry no metadata).
`DIR/.edit.lock` is the (empty) file whose flock serializes KB edits (`BotStore.edit_lock`).

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
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from threefold.apps.qa.bot import Bot, BotInfo
from threefold.apps.qa.calibration import Calibrator
from threefold.apps.qa.intent_fusion import IntentFusion
from threefold.apps.qa.intent_model import IntentHead
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ModelError
from threefold.core.files import read_json
from threefold.core.registry import STATE_FILE, ModelEntry, data_fingerprint

logger = logging.getLogger(__name__)

FORMAT_NAME = "threefold-qa-bot"
FORMAT_VERSION = 2  # 2: bot.json records the embedder's weights_id
READABLE_VERSIONS = (1, 2)
INTENT_DIR = "intent"
EDIT_LOCK_FILE = ".edit.lock"


class BotStore:
    """Publish, load, activate and roll back bot versions under one root directory."""

    def __init__(self, root: str | Path, *, keep_versions: int | None = None) -> None:
        """`keep_versions`: publishing deletes all but that many newest versions + the current."""
        self.root = Path(root)
        self.entry = ModelEntry(
            self.root, label="bot", keep=keep_versions, next_version=_next_version
        )
        self._folders = self.entry.folders

    def exists(self) -> bool:
        return self.current_version() is not None

    def current_version(self) -> str | None:
        return self._folders.current_version()

    def history(self) -> list[str]:
        return self._folders.history()

    def versions(self) -> list[str]:
        return self._folders.versions()

    def version_dir(self, version: str) -> Path:
        return self._folders.path(version)

    def publish(
        self,
        bot: Bot,
        *,
        activate: bool = True,
        created_by: str = "qa build",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Write `bot` as a new version (and make it current); sets and returns its version.

        `created_by` and `metadata` go into the version's registry metadata (version.json).
        """
        return self.entry.publish(
            self.writer(bot),
            metadata=self.metadata(bot, created_by=created_by, **(metadata or {})),
            activate=activate,
        )

    @staticmethod
    def metadata(bot: Bot, *, created_by: str, **extra: Any) -> dict[str, Any]:
        """Registry metadata of a bot version: who made it and a fingerprint of its KB."""
        kb_json = json.dumps(bot.kb.to_json(), sort_keys=True, ensure_ascii=False)
        return {
            "created_by": created_by,
            "data_fingerprint": data_fingerprint(kb_json),
            "faqs": len(bot.kb),
            "questions": bot.kb.n_questions,
            "intent_model": bot.intent is not None,
            **extra,
        }

    def writer(self, bot: Bot) -> Callable[[Path, str], None]:
        """`write(folder, version)` that saves `bot` as that version (for gated publishing)."""

        def write(folder: Path, version: str) -> None:
            bot.info.version = version
            self._write_version(bot, folder)

        return write

    @contextlib.contextmanager
    def edit_lock(self, *, for_reading: bool = False) -> Iterator[None]:
        """Hold the directory's edit lock: an exclusive flock on `DIR/.edit.lock`, so that of
        the threads and processes editing one bot, one at a time reads the current version,
        checks and publishes. Publishing takes the registry's own lock inside it.

        `for_reading` (a reload, which only reads): in a directory that cannot be written (a
        bot baked into a read-only image) the lock file is opened read-only (flock works on
        it), or, when there is none, the read goes on without the lock: nobody can edit
        there."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / EDIT_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if not for_reading:
                raise
            try:
                fd = os.open(self.root / EDIT_LOCK_FILE, os.O_RDONLY)
            except OSError:
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def pointer_stamp(self) -> object:
        """Changes whenever the current pointer (state.json) is replaced; cheap (one stat)."""
        return self.entry.pointer_stamp()

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
        if bot.intent is not None:
            bot.intent.save(folder / INTENT_DIR)
        doc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "info": asdict(bot.info),
            "calibration": bot.calibrator.to_dict(),
            "fusion": bot.fusion.to_dict() if bot.fusion else None,
        }
        (folder / "bot.json").write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")

    def activate(self, version: str) -> None:
        """Make an existing version current (appended to the history)."""
        self._folders.activate(version)

    def rollback(self) -> str:
        """Re-activate the version that was current before the current one; returns it."""
        return self.entry.rollback()

    # ---------------------------------------------------------------- reading
    def load(self, version: str | None = None, *, embedder: TextEncoder | None = None) -> Bot:
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
        doc = read_json(meta_path, "bot metadata")
        if doc.get("format") != FORMAT_NAME:
            raise ModelError(
                f"{meta_path} is not a threefold QA bot (format {doc.get('format')!r})"
            )
        if doc.get("format_version") not in READABLE_VERSIONS:
            raise ModelError(
                f"{meta_path} has format version {doc.get('format_version')!r}; this threefold "
                f"reads {list(READABLE_VERSIONS)}. Fix: rebuild the bot with `threefold qa build`"
            )
        info = BotInfo(**doc["info"])
        if doc["format_version"] == 1:
            info.embedder = _upgrade_v1_embedder(info.embedder)
        info.version = version
        kb = KnowledgeBase.load_saved(folder / "kb.json")  # as saved: rules may have changed
        index = FaissIndex.load(folder / "index")
        model = self._embedder_for(info, folder, embedder)
        calibrator = Calibrator.from_dict(doc["calibration"])
        fusion = IntentFusion.from_dict(doc["fusion"]) if doc.get("fusion") else None
        intent = IntentHead.load(folder / INTENT_DIR) if fusion is not None else None
        return Bot(
            kb=kb,
            index=index,
            embedder=model,
            calibrator=calibrator,
            info=info,
            intent=intent,
            fusion=fusion,
        )

    @staticmethod
    def _embedder_for(info: BotInfo, folder: Path, embedder: TextEncoder | None) -> TextEncoder:
        from threefold.core.embedder import Embedder

        ref = info.embedder
        expected = ref["weights_id"]
        if embedder is not None and embedder.weights_id == expected:
            return embedder
        if ref.get("source") == "saved":
            loaded = Embedder.from_dir(folder / ref["path"])
        else:
            loaded = Embedder(ref.get("model"), max_length=int(ref.get("max_length", 256))).load()
        if loaded.weights_id != expected:
            raise ModelError(
                f"bot {info.version!r} was built with embedder {ref.get('model_id')!r} but "
                f"{loaded.model_id!r} was loaded; its vectors would not match. Fix: rebuild the "
                "bot with the current model"
            )
        return loaded


def _next_version(existing: list[str]) -> str:
    """`NNNN-<UTC time>`: a sequence number after the highest so far, then when it was built."""
    number = 1 + max((int(v.split("-")[0]) for v in existing if v[:4].isdigit()), default=0)
    return f"{number:04d}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"


def _link_tree(source: Path, target: Path) -> None:
    """Copy a folder using hard links where possible (unchanged model weights cost no space)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def _upgrade_v1_embedder(ref: dict) -> dict:
    """A format-1 bot's embedder reference with the weights_id format 2 records explicitly.

    Format 1 kept it only inside model_id (`name@<weights_id>`), so bots built before format 2
    keep loading without a rebuild.
    """
    return {**ref, "weights_id": str(ref.get("model_id", "")).rpartition("@")[2]}
