"""The bot a running service answers from, with edits, reload and rollback swapped in atomically.

Readers take `manager.bot` once per request and use that snapshot throughout; a writer builds
and publishes a complete new Bot off to the side and then replaces the reference in one
assignment. A reader therefore sees the old or the new bot, never a half-updated index.

An edit is served at once by retrieval (new texts embedded into the index); when the bot has an
intent model, a background thread then rebuilds it from the edited KB (intent head + fusion,
the bot's build options) and swaps the result in the same way, unless another edit came first,
in which case it rebuilds again from the newer KB.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.builder import BuildOptions, EditStats, apply_edits, build_bot
from threefold.apps.qa.knowledge_base import FaqEntry
from threefold.apps.qa.micro_batch import MicroBatchEncoder
from threefold.apps.qa.store import BotStore
from threefold.core.encoder import TextEncoder

logger = logging.getLogger(__name__)


class BotManager:
    """Holds the current Bot of a BotStore; writers are serialized, readers never block.

    `micro_batch`: encode concurrent requests together (see `micro_batch`); the serving app's.
    """

    def __init__(
        self,
        store: BotStore,
        *,
        embedder: TextEncoder | None = None,
        retrain_in_background: bool = True,
        micro_batch: bool = False,
    ) -> None:
        self.store = store
        self._embedder = embedder
        self._write_lock = threading.Lock()
        self._bot: Bot | None = None
        self.retrain_in_background = retrain_in_background
        self.micro_batch = micro_batch
        self._retrain_lock = threading.Lock()
        self._retrain_wanted = False
        self._retrain_thread: threading.Thread | None = None
        self._retrain_idle = threading.Event()
        self._retrain_idle.set()

    @property
    def bot(self) -> Bot:
        bot = self._bot
        if bot is None:
            raise RuntimeError("BotManager.reload() must run before the bot is used")
        return bot

    def _swap(self, bot: Bot) -> None:
        if self.micro_batch and not isinstance(bot.embedder, MicroBatchEncoder):
            bot = bot.with_embedder(MicroBatchEncoder(bot.embedder))
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
        if new_bot.intent is not None and self.retrain_in_background:
            self._schedule_retrain()
        return new_bot.version, stats

    def wait_for_retrain(self, timeout: float | None = None) -> bool:
        """Block until no background retrain is pending or running; False on timeout."""
        return self._retrain_idle.wait(timeout)

    def _schedule_retrain(self) -> None:
        with self._retrain_lock:
            self._retrain_wanted = True
            self._retrain_idle.clear()
            if self._retrain_thread is None:
                self._retrain_thread = threading.Thread(
                    target=self._retrain_loop, name="qa-intent-retrain", daemon=True
                )
                self._retrain_thread.start()

    def _retrain_loop(self) -> None:
        while True:
            with self._retrain_lock:
                if not self._retrain_wanted:
                    self._retrain_thread = None
                    self._retrain_idle.set()
                    return
                self._retrain_wanted = False
            base = self.bot
            try:
                rebuilt = retrained(base)
            except Exception:
                logger.exception("background retrain of bot %s failed", base.version)
                continue
            with self._write_lock:
                if self._bot is not base:
                    logger.info("bot changed during the retrain; retraining from the newer one")
                    continue
                rebuilt.info.parent = base.version
                self.store.publish(rebuilt)
                self._swap(rebuilt)

    def rollback(self) -> str:
        """Re-activate the previously active version and swap it in; returns its version."""
        with self._write_lock:
            version = self.store.rollback()
            self._swap(self.store.load(version, embedder=self._embedder))
            return version


def retrained(bot: Bot) -> Bot:
    """The bot rebuilt from its own KB and build options (intent head and fusion refitted).

    The embedder is reused as it is (a fine-tuned one is not fine-tuned again).
    """
    options = BuildOptions.from_dict({**bot.info.options, "fine_tune": False})
    return build_bot(bot.kb, bot.embedder, options)  # type: ignore[arg-type]
