"""Consumer runners on background threads for tests of consumer groups (rebalances, idleness)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class RunnerThreads:
    """Starts runners on daemon threads; what a thread raised lands in `errors`."""

    def __init__(self, safety_s: float) -> None:
        self.safety_s = safety_s
        self.errors: list[BaseException] = []
        self._started: list[tuple[Any, threading.Thread]] = []

    def start(self, runner: Any) -> threading.Thread:
        """Run `runner` until it is stopped, or for `safety_s` at most."""

        def target() -> None:
            try:
                runner.run(stop_after=self.safety_s)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._started.append((runner, thread))
        return thread

    def stop_all(self) -> None:
        """Stop every runner started here, then wait (`safety_s` each) for its thread."""
        for runner, _ in self._started:
            runner.stop()
        for _, thread in self._started:
            thread.join(self.safety_s)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition`; fail at once on a thread's error, or after `safety_s`."""
        deadline = time.monotonic() + self.safety_s
        while not condition():
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"timed out after {self.safety_s} s: {what}"
            time.sleep(0.1)
