"""The bot a running service answers from, with edits, reload and rollback swapped in atomically.

Readers take `manager.bot` once per request and use that snapshot throughout; a writer builds
and publishes a complete new Bot off to the side and then replaces the reference in one
assignment. A reader therefore sees the old or the new bot, never a half-updated index.

An edit is served at once by retrieval (new texts embedded into the index); when the bot has an
intent model, a background thread then rebuilds it from the edited KB (intent head + fusion,
the bot's build options) and swaps the result in the same way, unless another edit came first,
in which case it rebuilds again from the newer KB. An edit made with `recalibrate=True` (the
review queue's) rebuilds a retrieval-only bot the same way, so its calibration is refitted on the
edited KB too.

With a gate set (`gate`, from THREEFOLD_QA_GATE_SET at the entry point) that rebuild is gated as
`threefold retrain qa` is (`retrain.GateSet`): published as a candidate, made current only when
not worse on the gate set than the version it was rebuilt from; a rejected one stays in the
registry (status rejected, with the reason) and the edited version keeps answering. Without a
gate set every rebuild goes live ungated. The edit itself (retrieval) always goes live at once:
an admin's explicit change. Each rebuild's outcome (`REBUILD_OUTCOMES`) is logged as
`qa_retrain_outcome`, kept in `last_rebuild` and passed to the `on_rebuild` callbacks (metrics).

Every worker follows the bot directory's `current` pointer (`follow_pointer`, at most every
`check_every_s`, from the `bot` property): a version published or rolled back by another process
(`threefold retrain qa`, `threefold models rollback`, another gunicorn worker's edit) is loaded
and swapped in without a restart. A version that fails to load is logged and the old bot kept.

An edit (and a background rebuild's publish) holds the directory's edit lock
(`BotStore.edit_lock`, across processes) from reading the newest version to publishing its own:
`edit_with` decides the changes on that newest KB, so a check such as "this id is new" and the
write that relies on it are one step, and no worker's edit is lost to another's. A reload or a
rollback holds it too, so it never lands between an edit's read and its publish.

`close` stops the background rebuild: it stops at its next check and publishes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.builder import BuildOptions, EditStats, apply_edits, build_bot
from threefold.apps.qa.intent_model import TrainingStopped
from threefold.apps.qa.knowledge_base import FaqEntry, KnowledgeBase
from threefold.apps.qa.micro_batch import MicroBatchEncoder
from threefold.apps.qa.store import BotStore
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ModelError

if TYPE_CHECKING:
    from threefold.apps.qa.retrain import GateSet
    from threefold.core.gate import GateDecision

logger = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0
RECALIBRATED_BY = "qa recalibration after kb edit"
REBUILT_FROM = "rebuilt_from"  # a background rebuild's metadata: the version it rebuilt
CLOSE_WAIT_S = 10.0  # how long `close` waits for the background rebuild's thread to end
KbEdit = tuple[Iterable[FaqEntry], Iterable[str]]  # (upserts, deletes)
# what became of a background rebuild: published ungated (no gate set), promoted or rejected by
# the gate, failed (the build or the gate's checks raised; logged with the error)
REBUILD_OUTCOMES = ("published", "promoted", "rejected", "failed")


class StaleBot(ModelError):
    """The bot directory's current version could not be loaded here, so an edit now would be
    built on an older one and discard it."""


class BotManager:
    """Holds the current Bot of a BotStore; writers are serialized, readers never block.

    `micro_batch`: encode concurrent requests together (see `micro_batch`); the serving app's.
    `check_every_s`: how often reading `bot` looks at the pointer (None: never; the server's
    managers follow it every `CHECK_EVERY_S`).
    `gate`: the gate set a background rebuild must pass to go live (None: it goes live ungated).
    """

    def __init__(
        self,
        store: BotStore,
        *,
        embedder: TextEncoder | None = None,
        retrain_in_background: bool = True,
        micro_batch: bool = False,
        check_every_s: float | None = None,
        gate: GateSet | None = None,
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
        self._stopping = threading.Event()
        self.check_every_s = check_every_s
        self._stamp: object = None
        self._checked_at = 0.0
        self.on_swap: list[Callable[[Bot], object]] = []  # called after each swap (metrics)
        self.gate = gate
        # called with each background rebuild's outcome, one of REBUILD_OUTCOMES (metrics)
        self.on_rebuild: list[Callable[[str], object]] = []
        self.last_rebuild: dict[str, Any] | None = None  # the latest one's outcome (status APIs)

    @property
    def bot(self) -> Bot:
        """The bot to answer from (after following the pointer, when it is time to look)."""
        if self.check_every_s is not None:
            self.follow_pointer()
        return self._current()

    def follow_pointer(self, *, force: bool = False) -> bool:
        """Swap in the store's current version when the pointer names another one; True when
        swapped. Cheap (a stat) and rate-limited unless `force`; never blocks a reader: while
        another thread writes, the old bot keeps answering."""
        now = time.monotonic()
        if not force and now - self._checked_at < (self.check_every_s or 0.0):
            return False
        self._checked_at = now
        stamp = self.store.pointer_stamp()
        if stamp == self._stamp or not self._write_lock.acquire(blocking=False):
            return False
        try:
            return self._catch_up()
        finally:
            self._write_lock.release()

    def _catch_up(self) -> bool:
        """With the write lock held: swap in the version the pointer names when it is another
        one; True when swapped. One that fails to load is logged and the old bot kept."""
        try:
            self._stamp = self.store.pointer_stamp()
            version = self.store.current_version()
            if self._bot is None or version is None or version == self._bot.version:
                return False
            self._swap(self.store.load(version, embedder=self._embedder))
        except Exception:
            logger.exception("could not load the bot version the pointer names; keeping the old")
            return False
        logger.info("followed the pointer of %s to bot version %s", self.store.root, version)
        return True

    def _swap(self, bot: Bot) -> None:
        if self.micro_batch and not isinstance(bot.embedder, MicroBatchEncoder):
            bot = bot.with_embedder(MicroBatchEncoder(bot.embedder))
        self._bot = bot
        self._embedder = bot.embedder
        logger.info("now answering from bot version %s (%d FAQs)", bot.version, len(bot.kb))
        for callback in self.on_swap:
            callback(bot)

    def reload(self) -> str:
        """Load the store's current version (e.g. after an offline rebuild) and swap it in
        (under the edit lock, so never in the middle of another worker's edit)."""
        with self._write_lock, self.store.edit_lock(for_reading=True):
            self._stamp = self.store.pointer_stamp()
            self._swap(self.store.load(embedder=self._embedder))
            return self._current().version

    def _current(self) -> Bot:
        bot = self._bot
        if bot is None:
            raise RuntimeError("BotManager.reload() must run before the bot is used")
        return bot

    def edit(
        self,
        upserts: Iterable[FaqEntry] = (),
        deletes: Iterable[str] = (),
        *,
        by: str = "admin",
        recalibrate: bool = False,
    ) -> tuple[str, EditStats]:
        """Apply changes, publish them as a new version and swap it in; returns (version, stats).

        `by`: who edited (recorded as the version's created_by, "kb edit by <by>").
        `recalibrate`: also refit a retrieval-only bot's calibration in the background (a bot
        with an intent model is always rebuilt after an edit).
        """
        changes = (list(upserts), list(deletes))
        return self.edit_with(lambda _kb: changes, by=by, recalibrate=recalibrate)

    def edit_with(
        self,
        plan: Callable[[KnowledgeBase], KbEdit],
        *,
        by: str = "admin",
        recalibrate: bool = False,
    ) -> tuple[str, EditStats]:
        """`edit` with the changes `plan(kb)` returns as (upserts, deletes) for the newest KB,
        under the edit lock: what `plan` checks (an id is new, an FAQ exists) still holds when
        the edit is published. An exception `plan` raises refuses the edit; nothing is written.
        """
        with self._write_lock, self.store.edit_lock():
            self._catch_up()  # another worker's edit is the base, not lost
            self._refuse_a_stale_base()
            upserts, deletes = plan(self._current().kb)
            new_bot, stats = apply_edits(self._current(), upserts, deletes)
            self.store.publish(new_bot, created_by=f"kb edit by {by}")
            self._stamp = self.store.pointer_stamp()
            self._swap(new_bot)
        if (new_bot.intent is not None or recalibrate) and self.retrain_in_background:
            self._schedule_retrain()
        return new_bot.version, stats

    def _refuse_a_stale_base(self) -> None:
        """StaleBot when the pointer names a version `_catch_up` could not load."""
        current, serving = self.store.current_version(), self._current().version
        if current is not None and current != serving:
            raise StaleBot(
                f"the bot's current version {current} could not be loaded here (the log says "
                f"why), so an edit now would be built on {serving} and discard {current}. "
                "Fix: repair that version or roll back to one that loads, then edit again"
            )

    def wait_for_retrain(self, timeout: float | None = None) -> bool:
        """Block until no background retrain is pending or running; False on timeout."""
        return self._retrain_idle.wait(timeout)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Stop the background rebuild; safe to call again.

        It stops at its next check (between build stages, before each intent training step,
        before publishing), publishes nothing and logs `qa_retrain_stopped`; later edits start
        none. On return no rebuild can publish any more (one publishing already is waited
        for); the thread itself is waited for up to `timeout` s (True when it ended: an encode
        under way runs to its end first, in a daemon thread).
        """
        self._stopping.set()
        with self._write_lock:
            pass  # a publish under way ends first; the rebuild checks the flag before its own
        with self._retrain_lock:
            thread = self._retrain_thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _schedule_retrain(self) -> None:
        if self._stopping.is_set():
            logger.info("closing: the edit is not rebuilt in the background")
            return
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
                if self._retrain_wanted and self._stopping.is_set():
                    self._log_stopped(self._current(), "before starting")
                if not self._retrain_wanted or self._stopping.is_set():
                    self._retrain_thread = None
                    self._retrain_idle.set()
                    return
                self._retrain_wanted = False
            base = self._current()
            try:
                if self.gate is not None:
                    self.gate.check(base)  # before the build: a gate that cannot judge it
                rebuilt = retrained(base, should_stop=self._stopping.is_set)
                decision = None if self.gate is None else self.gate.judge(rebuilt, base)[0]
            except TrainingStopped as stopped:
                self._log_stopped(base, stopped.stage)
                continue
            except Exception as exc:
                logger.exception("background retrain of bot %s failed", base.version)
                self._rebuilt(base, "failed", error=f"{type(exc).__name__}: {exc}")
                continue
            with self._write_lock, self.store.edit_lock():
                if self._stopping.is_set():
                    self._log_stopped(base, "before publishing")
                    continue
                self._catch_up()  # another worker's edit since: rebuild from that one
                if self._bot is not base:
                    logger.info(  # the edit that changed it schedules the next rebuild
                        "bot changed during the retrain (an edit here or in another process); "
                        "not published, the newer bot is rebuilt"
                    )
                    continue
                if self.store.current_version() not in (None, base.version):
                    logger.warning(  # the pointer names a version that did not load here
                        "the bot's current version %s could not be loaded here; the retrain "
                        "of %s is not published over it",
                        self.store.current_version(),
                        base.version,
                    )
                    continue
                rebuilt.info.parent = base.version
                if self.gate is None or decision is None:
                    version = self.store.publish(
                        rebuilt, created_by=RECALIBRATED_BY, metadata={REBUILT_FROM: base.version}
                    )
                    outcome = "published"
                else:
                    version = self.gate.publish(
                        self.store, rebuilt, base, decision,
                        created_by=RECALIBRATED_BY, **{REBUILT_FROM: base.version},
                    )  # fmt: skip
                    outcome = "promoted" if decision.promoted else "rejected"
                self._stamp = self.store.pointer_stamp()
                if outcome != "rejected":
                    self._swap(rebuilt)
                self._rebuilt(base, outcome, version=version, decision=decision)

    def _rebuilt(
        self,
        base: Bot,
        outcome: str,
        *,
        version: str | None = None,
        decision: GateDecision | None = None,
        error: str | None = None,
    ) -> None:
        """Record a background rebuild's outcome: `last_rebuild`, one log line, the callbacks."""
        self.last_rebuild = {
            "outcome": outcome,
            "rebuilt_from": base.version,
            "version": version,
            "gate": None if decision is None else decision.to_dict(),
            "error": error,
        }
        logger.log(
            logging.WARNING if outcome in ("rejected", "failed") else logging.INFO,
            "background rebuild of bot %s: %s (%s)",
            base.version,
            outcome,
            decision.reason if decision is not None else error or "no gate set",
            extra={"fields": {"event": "qa_retrain_outcome", **self.last_rebuild}},
        )
        for callback in self.on_rebuild:
            callback(outcome)

    @staticmethod
    def _log_stopped(base: Bot, stage: str) -> None:
        logger.info(
            "background retrain of bot %s stopped %s (closing); nothing published",
            base.version,
            stage,
            extra={
                "fields": {
                    "event": "qa_retrain_stopped",
                    "bot_version": base.version,
                    "stage": stage,
                }
            },
        )

    def rollback(self) -> str:
        """Re-activate the previously active version and swap it in; returns its version.

        A background rebuild and the edit it followed hold the same KB, so rolling back from
        the rebuild goes back past that edit too: one rollback undoes one edit. Taken under the
        edit lock: an edit under way (here or in another worker) publishes first, and the next
        one edits the rolled-back version.
        """
        with self._write_lock, self.store.edit_lock():
            current = self.store.current_version()
            version = self.store.rollback()
            rebuilt_from = self.store.entry.info(current).get(REBUILT_FROM) if current else None
            if rebuilt_from == version and len(self.store.entry.history()) >= 2:
                version = self.store.rollback()
            self._stamp = self.store.pointer_stamp()
            self._swap(self.store.load(version, embedder=self._embedder))
            return version


def retrained(
    bot: Bot, kb: KnowledgeBase | None = None, *, should_stop: Callable[[], bool] | None = None
) -> Bot:
    """The bot rebuilt from its own KB (or `kb`) and build options (calibration, intent head and
    fusion refitted). The embedder is reused as it is (a fine-tuned one is not fine-tuned again).
    `should_stop`: see `build_bot` (TrainingStopped).
    """
    options = BuildOptions.from_dict({**bot.info.options, "fine_tune": False})
    return build_bot(
        bot.kb if kb is None else kb,
        bot.embedder,  # type: ignore[arg-type]
        options,
        should_stop=should_stop,
    )
