"""The bot a running service answers from, with edits, reload and rollback swapped in atomically.

Readers take `manager.bot` once per request and use that snapshot throughout; a writer builds
and publishes a complete new Bot off to the side and then replaces the reference in one
assignment. A reader therefore sees the old or the new bot, never a half-updated index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.builder import EditStats, apply_edits
from threefold.apps.qa.knowledge_base import FaqEntry
from threefold.apps.qa.store import BotStore
from threefold.core.encoder import TextEncoder

logger = logging.getLogger(__name__)


class BotManager:
    """Holds the current Bot of a BotStore; writers are serialized, readers never block."""

    def __init__(self, store: BotStore, *, embedder: TextEncoder | None = None) -> None:
        self.store = store
        self._embedder = embedder
        self._write_lock = threading.Lock()
        self._bot: Bot | None = None

    @property
    def bot(self) -> Bot:
        bot = self._bot
        if bot is None:
            raise RuntimeError("BotManager.reload() must run before the bot is used")
        return bot

    def _swap(self, bot: Bot) -> None:
        self._bot = bot
        self._embedder = bot.embedder
        logger.info("now answering from bot version %s (%d FAQs)", bot.version, len(bot.kb))

    def reload(self) -> str:
        """Load the store's current version (e.g. after an offline rebuild) and swap it in."""
        with self._write_lock:
            self._swap(self.store.load(embedder=self._embedder))
            return self.bot.version

    def edit(
        self, upserts: Iterable[FaqEntry] = (), deletes: Iterable[str] = ()
    ) -> tuple[str, EditStats]:
        """Apply changes, publish them as a new version and swap it in; returns (version, stats)."""
        with self._write_lock:
            new_bot, stats = apply_edits(self.bot, upserts, deletes)
            self.store.publish(new_bot)
            self._swap(new_bot)
            return new_bot.version, stats

    def rollback(self) -> str:
        """Re-activate the previously active version and swap it in; returns its version."""
        with self._write_lock:
            version = self.store.rollback()
            self._swap(self.store.load(version, embedder=self._embedder))
            return version
