"""Events accepted while Redis was down, kept on local disk until Redis takes them.

One append-only JSON-lines file (`events.jsonl`; impressions use `impressions.jsonl` with
`record_type=Impression`: any type with `to_dict`/`from_dict`) under the spool directory,
shared by the workers of one host (flock serializes them). Every append is fsync'd before the
API answers 202, so an accepted event survives a crash of the worker; `replay` pushes the file
to Redis, oldest first, and empties it only once Redis has taken every event. A write the disk
refuses is cut back off the file; a line torn by a crash is set aside in `<file>.rejected`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from threefold.apps.recs.events import Event

logger = logging.getLogger(__name__)
SPOOL_FILE = "events.jsonl"


class EventSpool:
    """An fsync'd append-only file of events (or other records) waiting for Redis."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_name: str = SPOOL_FILE,
        record_type: Any = Event,
    ) -> None:
        self.path = Path(directory) / file_name
        self.record_type = record_type

    def append(self, events: Sequence[Any]) -> None:
        """Write the events and fsync them (OSError when the disk refuses: then nothing of them
        stays in the file, so no half line is left for a replay to choke on)."""
        data = "".join(json.dumps(e.to_dict()) + "\n" for e in events).encode("utf-8")
        with self._locked() as handle:
            fd = handle.fileno()
            start = os.fstat(fd).st_size
            if start and os.pread(fd, 1, start - 1) != b"\n":  # a line torn by a crash
                data = b"\n" + data  # ends where it is; ours start on their own line
            try:
                written = 0
                while written < len(data):  # the file is opened to append: writes go at the end
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise

    def pending(self) -> bool:
        """Whether events are waiting (cheap: one stat)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def replay(self, push: Callable[[list[Any]], bool]) -> int:
        """Push the spooled events with `push`; on success empty the spool. Returns how many.

        A line that is not a record (torn by a crash mid-write) is set aside in
        `<file>.rejected`, logged, and does not hold back the others.
        """
        with self._locked() as handle:
            handle.seek(0)
            events, unreadable = [], []
            for line in handle:
                if line.strip():
                    try:
                        events.append(self.record_type.from_dict(json.loads(line)))
                    except (ValueError, KeyError, TypeError):
                        unreadable.append(line if line.endswith("\n") else line + "\n")
            if events and not push(events):
                return 0
            if unreadable:
                self._set_aside(unreadable)
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("replayed %d spooled records of %s to redis", len(events), self.path.name)
        return len(events)

    def _set_aside(self, lines: list[str]) -> None:
        rejected = self.path.with_name(self.path.name + ".rejected")
        with rejected.open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        logger.error(
            "%d unreadable line(s) of %s (torn by a crash?) set aside in %s",
            len(lines),
            self.path.name,
            rejected,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield handle
