"""Independent CPU-bound jobs run at once in spawned processes, their log lines forwarded here.

Used to train models that share no state (the sequence ensemble's members) on several cores: one
torch process uses its cores poorly on small models, and threads would share torch's global RNG.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Result = TypeVar("Result")


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _forward_logs(queue: Any, level: int) -> None:
    """In a worker: send every log record at `level` or above to the parent through `queue`."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)


class _Relay(logging.Handler):
    """In the parent: hand a worker's record to the logger of the same name, as if logged here."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def run_in_processes(
    function: Callable[..., Result], calls: Sequence[tuple[Any, ...]], *, processes: int
) -> list[Result]:
    """`[function(*args) for args in calls]`, with up to `processes` calls running at once.

    Each call runs in a fresh spawned process (no fork of this one's threads or locks), so
    `function` and its arguments must be picklable and importable by name. Results come back in
    the order of `calls`; the first call that raised re-raises its exception here. The workers'
    log records reach this process's handlers at this process's effective root level.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, found {processes!r}")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    listener = logging.handlers.QueueListener(queue, _Relay())
    listener.start()
    try:
        with ProcessPoolExecutor(
            max_workers=min(processes, len(calls)) or 1,
            mp_context=context,
            initializer=_forward_logs,
            initargs=(queue, logging.getLogger().getEffectiveLevel()),
        ) as pool:
            futures = [pool.submit(function, *args) for args in calls]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:  # calls not yet started; running ones finish first
                    future.cancel()
                raise
    finally:
        listener.stop()
        queue.close()
        queue.join_thread()
