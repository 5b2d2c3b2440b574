"""Counting the event log in a forked child process, so a rebuild leaves the interpreter lock to
the requests of the serving process.

A statistics rebuild in a thread of the serving process competes with the request threads for
the GIL: each time a request takes it back after a torch or numpy call, it waits for the
rebuild's current stretch of Python (at 1M items: requests of up to 0.16-0.24 s while a 5.7 s
rebuild runs). The child counts with its copy-on-write view of the catalog and the log, writes
the arrays to a temporary folder, and exits; the parent memory-maps them. Its thread only waits
(without the GIL) and then does a few array reads. Where `os.fork` does not exist, or the child
fails, the count runs in the calling thread as before. The arrays go to the temporary folder
(`TMPDIR`; the deploy's pods: their /tmp volume): 60 MB for `bench/recs_scale.py`'s log of
348,166 events over 1M items, unlinked once mapped, freed when the statistics are replaced.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from threefold.apps.recs import candidates
from threefold.apps.recs.candidates import InteractionStats
from threefold.apps.recs.events import Event

logger = logging.getLogger(__name__)
NICENESS = 10  # added to the child's nice value: it yields the CPU to request threads


def count_statistics(
    item_ids: Sequence[str],
    events: Sequence[Event],
    *,
    position: dict[str, int] | None = None,
    neighbours: int | None,
    trending_window: float,
) -> InteractionStats:
    """`InteractionStats(item_ids, events, ...)` counted in a forked child where possible.

    `position` (id -> index of `item_ids`, when the caller has it) spares rebuilding that map.
    """
    options = {"neighbours": neighbours, "trending_window": trending_window}
    counted = _count_in_child(item_ids, events, position, options) if hasattr(os, "fork") else None
    return InteractionStats(item_ids, events, **options) if counted is None else counted


def _count_in_child(
    item_ids: Sequence[str],
    events: Sequence[Event],
    position: dict[str, int] | None,
    options: dict[str, Any],
) -> InteractionStats | None:
    """The statistics counted by a forked child; None (logged) when that fails."""
    try:
        folder = tempfile.mkdtemp(prefix="threefold-stats-")
    except OSError as exc:
        logger.warning("no temporary folder for counting in a child (%s); counting here", exc)
        return None
    try:
        pid = os.fork()
        if pid == 0:  # the child: count, write, leave without running the parent's exit code
            code = 1
            try:
                os.nice(NICENESS)  # the serving process's requests come first for the CPU
                candidates.GIL_SLICE = 1 << 62  # nobody to share the lock with here
                InteractionStats(item_ids, events, **options).save_arrays(folder)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            return InteractionStats.load_arrays(folder, item_ids, position)
        logger.warning(
            "counting the event log in a child process failed (exit status %s); counting here",
            os.waitstatus_to_exitcode(status),
        )
    except OSError as exc:  # no process left to fork (memory, limits), or unreadable results
        logger.warning("could not count the event log in a child (%s); counting here", exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # mapped arrays stay readable until unmapped
    return None
