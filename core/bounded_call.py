"""A blocking call its caller waits for only so long: for calls that cannot be interrupted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

STOP_CHECK_S = 0.1  # how often a wait in `call_within` looks whether it was asked to stop


def call_within(
    call: Callable[[], T],
    *,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    late: Callable[[T | None], None] | None = None,
    name: str = "threefold-bounded-call",
) -> T:
    """`call()` on a daemon thread, waited for `timeout_s` at most and only until `stop` is
    set: for calls that wait without a limit of their own (kafka-python's metadata, name
    resolution), or with one too long to wait out. Returns what `call` returns, raises what it
    raises, or TimeoutError when the wait ended first; `late(its result, None when it raised)`
    then runs on the helper thread once `call` is done (to close what it opened)."""
    if stop is not None and stop.is_set():
        raise TimeoutError("stopped before the call")
    lock = threading.Lock()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
        with lock:
            done.set()
            abandoned = outcome.get("abandoned", False)
        if abandoned and late is not None:
            late(outcome.get("value"))

    threading.Thread(target=run, name=name, daemon=True).start()
    ends = None if timeout_s is None else time.monotonic() + timeout_s
    while not done.is_set() and not (stop is not None and stop.is_set()):
        left = None if ends is None else ends - time.monotonic()
        if left is not None and left <= 0:
            break
        slices = [s for s in (left, STOP_CHECK_S if stop is not None else None) if s is not None]
        done.wait(min(slices, default=None))
    with lock:
        finished = done.is_set()
        outcome["abandoned"] = not finished
    if not finished:
        raise TimeoutError(
            "stopped before the call ended"
            if stop is not None and stop.is_set()
            else f"no answer within {timeout_s:g} s"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
