"""Serve the current version of a registry entry and swap in a newly promoted one, no restart.

`LiveModel` reads the entry's pointer (a cheap stat of its state file) when asked or from a
watcher thread; when the pointer names another version it loads that one outside any lock
readers take and replaces the reference in one assignment, so a reader holds the old or the new
model, never a mix. Every process (each gunicorn worker, each consumer) follows the pointer on
its own, so a promotion or a rollback reaches all of them within `check_every_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from threefold.core.registry import ModelEntry

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LiveModel(Generic[T]):
    """The loaded current version of `entry`; `load(folder, version)` builds the model."""

    def __init__(
        self,
        entry: ModelEntry,
        load: Callable[[Path, str], T],
        *,
        check_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.entry = entry
        self.load = load
        self.check_every_s = check_every_s
        self.clock = clock
        self.on_swap: list[Callable[[str, T], None]] = []
        self._loaded: tuple[str, T] | None = None
        self._stamp: object = None
        self._checked_at = float("-inf")
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self) -> tuple[str, T]:
        """(version, model) of the version loaded last; loads the current one on first use."""
        loaded = self._loaded
        if loaded is None:
            self.refresh()
            loaded = self._loaded
            if loaded is None:  # refresh logs why; the entry has no current version to serve
                self.entry.current_dir()  # raises ModelError with the fix
                raise AssertionError("unreachable")
        return loaded

    @property
    def version(self) -> str:
        return self.get()[0]

    @property
    def model(self) -> T:
        return self.get()[1]

    def refresh(self) -> bool:
        """Load and swap in the version the pointer names now; True when it changed."""
        with self._load_lock:
            self._checked_at = self.clock()
            stamp = self.entry.pointer_stamp()
            if stamp == self._stamp and self._loaded is not None:
                return False
            version = self.entry.current_version()
            if version is None or (self._loaded is not None and self._loaded[0] == version):
                self._stamp = stamp
                return False
            try:
                model = self.load(self.entry.version_dir(version), version)
            except Exception:
                if self._loaded is None:
                    raise
                logger.exception(
                    "could not load %s version %s; still serving %s",
                    self.entry.name, version, self._loaded[0],
                )  # fmt: skip
                self._stamp = stamp  # do not retry a broken version on every request
                return False
            previous = self._loaded[0] if self._loaded else None
            self._loaded = (version, model)
            self._stamp = stamp
        if previous is not None:
            logger.info(
                "swapped %s from version %s to %s", self.entry.name, previous, version,
                extra={"model": self.entry.name, "version": version, "previous": previous},
            )  # fmt: skip
        for callback in self.on_swap:
            callback(version, model)
        return True

    def maybe_refresh(self) -> bool:
        """`refresh()` when `check_every_s` has passed since the last check; else False."""
        if self.clock() - self._checked_at < self.check_every_s:
            return False
        return self.refresh()

    def watch(self, interval_s: float | None = None) -> None:
        """Refresh from a daemon thread every `interval_s` (default `check_every_s`)."""
        if self._thread is not None:
            return
        interval = self.check_every_s if interval_s is None else interval_s
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    logger.exception("watching %s failed; retrying", self.entry.name)

        self._thread = threading.Thread(target=loop, name=f"watch-{self.entry.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread (if any)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
