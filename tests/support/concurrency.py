"""Races in tests: calls run in threads released together."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

JOIN_TIMEOUT_S = 300  # a call still running after this is a hang: the test fails, never waits on


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together (a barrier); their results in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(position: int) -> None:
        start.wait()
        results[position] = calls[position]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a call did not return"
    return results
