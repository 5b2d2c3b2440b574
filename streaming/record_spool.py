"""Records accepted while Redis was down, kept on local disk until Redis takes them.

One append-only JSON-lines file per kind of record under the spool directory (any type with
`to_dict`/`from_dict`), shared by the workers of one host: an exclusive `flock` on the file
serializes them. Every append is fsync'd before it returns, so an accepted record survives a
crash (SIGKILL, OOM kill) of the worker. `replay` pushes the whole file to Redis, oldest first,
and empties it only once Redis has taken every record, holding the lock throughout: of two
workers replaying at once (two starting after a crash) one pushes, the other then finds the
file empty, so nothing is written twice. A record is pushed again only when a worker dies
between Redis taking the records and the file being emptied.

A write the disk refuses is cut back off the file; a line torn by a crash is set aside in
`<file>.rejected` and logged. With `max_bytes` set, an append that would pass it is refused
whole (`SpoolFull`, an `OSError` with ENOSPC): records already spooled are never dropped to
make room, the caller decides what happens to the new ones.

Keep the directory on a local disk (e.g. a volume of the pod), not a network share: the lock
only serializes the workers of one host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)
_CHUNK_BYTES = 1 << 20


class SpoolFull(OSError):
    """An append refused because the spool would pass its `max_bytes` (nothing was written)."""


class RecordSpool:
    """An fsync'd append-only file of records waiting for Redis."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_name: str,
        record_type: Any,
        max_bytes: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 (or None: no limit), found {max_bytes}")
        self.path = Path(directory) / file_name
        self.record_type = record_type
        self.max_bytes = max_bytes

    def append(self, records: Sequence[Any]) -> None:
        """Write the records and fsync them (OSError when the disk refuses, `SpoolFull` past
        `max_bytes`: then nothing of them stays in the file, so no half line is left for a
        replay to choke on)."""
        data = "".join(json.dumps(r.to_dict()) + "\n" for r in records).encode("utf-8")
        with self._locked() as handle:
            fd = handle.fileno()
            start = os.fstat(fd).st_size
            if start and os.pread(fd, 1, start - 1) != b"\n":  # a line torn by a crash
                data = b"\n" + data  # ends where it is; ours start on their own line
            if self.max_bytes is not None and start + len(data) > self.max_bytes:
                raise SpoolFull(
                    errno.ENOSPC,
                    f"spool full: {start} bytes wait in it and {len(data)} more would pass its "
                    f"limit of {self.max_bytes} bytes; nothing was added (the spool empties once "
                    "Redis answers again; or raise its size limit)",
                    str(self.path),
                )
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
        """Whether records are waiting (cheap: one stat)."""
        return self.size_bytes() > 0

    def size_bytes(self) -> int:
        """The size of the file (one stat; 0 when there is none)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def count(self) -> int:
        """How many lines (records, and any torn one) wait: reads the file, so for metrics and
        logs, not for every request."""
        lines, last = 0, b"\n"
        try:
            with self.path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
        except FileNotFoundError:
            return 0
        return lines + (last != b"\n")

    def replay(self, push: Callable[[list[Any]], bool]) -> int:
        """Push the spooled records with `push`; on success empty the spool. Returns how many.

        `push` gets every record, oldest first; when it returns False or raises, the spool
        keeps them all. A line that is not a record (torn by a crash mid-write) is set aside in
        `<file>.rejected`, logged, and does not hold back the others.
        """
        with self._locked() as handle:
            handle.seek(0)
            records, unreadable = [], []
            for line in handle:
                if line.strip():
                    try:
                        records.append(self.record_type.from_dict(json.loads(line)))
                    except (ValueError, KeyError, TypeError):
                        unreadable.append(line if line.endswith("\n") else line + "\n")
            if records and not push(records):
                return 0
            if unreadable:
                self._set_aside(unreadable)
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("replayed %d spooled records of %s to redis", len(records), self.path.name)
        return len(records)

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
