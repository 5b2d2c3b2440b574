"""Records accepted while Redis was down, kept on local disk until Redis takes them.

One append-only JSON-lines file per kind of record under the spool directory (any type with
`to_dict`/`from_dict`), shared by the workers of one host: an exclusive `flock` on the file
serializes them. Every append is fsync'd before it returns, so an accepted record survives a
crash (SIGKILL, OOM kill) of the worker. `replay` pushes the file to Redis, oldest first, and
removes what Redis took, holding the lock throughout: of two workers replaying at once (two
starting after a crash) one pushes, the other then finds the file empty, so nothing is written
twice by the spool itself. A record is still pushed again when Redis took it but the push did
not hear so (a timeout while Redis stalled, a worker killed before the file was rewritten):
the apps make that harmless with write ids (`streaming.write_ids`), which their append scripts
claim, so Redis stores each record once.

A record Redis refuses on its data (the push raises `RecordsRefused`: a key of the wrong type,
a script error), as opposed to Redis being unreachable, does not hold up the others: the replay
pushes halves of the batch until it has found the refused records, sets each aside in
`<file>.rejected` (a JSON line with the reason), logs it and pushes the rest in order. A line
torn by a crash is set aside there too, as it was. A write the disk refuses is cut back off the
file. With `max_bytes` set, an append that would pass it is refused whole (`SpoolFull`, an
`OSError` with ENOSPC): records already spooled are never dropped to make room, the caller
decides what happens to the new ones. The `.rejected` file has a limit of its own
(`rejected_max_bytes`, by default `max_bytes`): once the next entry would pass it, that entry
and the others of its batch are not set aside but dropped, as they would be refused again,
logged with how many of each kind, and reported to the `on_not_set_aside` listeners (the app
counts them), so records refused on their data never fill the disk. Nothing in it is ever
dropped to make room: the operator reads it, then empties or moves it away.

Keep the directory on a local disk (e.g. a volume of the pod), not a network share: the lock
only serializes the workers of one host. Apps sharing a directory name their files with
`spool_file_name`, by the Redis prefix and server the records are for, so that none is ever
replayed into another deployment's Redis.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from redis.connection import parse_url

from threefold.core.settings import safe_url

logger = logging.getLogger(__name__)
_CHUNK_BYTES = 1 << 20
WRITE_PROBE_KEY = "spool-write-probe"  # `redis_takes_writes`, under the app's Redis prefix


class SpoolFull(OSError):
    """An append refused because the spool would pass its `max_bytes` (nothing was written)."""


class RecordsRefused(Exception):
    """Raised by a `replay` push: the store answers but refuses these records on their data
    (pushing them again would fail again). The message is the reason, kept with each record
    set aside."""


def redis_takes_writes(client: Any, prefix: str) -> bool:
    """Whether Redis takes a write now (SET `<prefix>spool-write-probe`, kept a minute): tells
    records Redis refuses on their data (`RecordsRefused`: it still takes this) from a Redis that
    refuses every write for now (a READONLY replica after a failover, OOM, MISCONF) or does not
    answer."""
    try:
        client.set(prefix + WRITE_PROBE_KEY, "1", ex=60)
    except Exception:  # any failure: not the records' fault, they wait
        return False
    return True


def spool_file_name(kind: str, redis_prefix: str, redis_url: str | None) -> str:
    """`<kind>-<prefix>-<digest of the prefix>-<digest of the server>.jsonl`: the spool of the
    `kind` records bound for `redis_prefix` on the Redis at `redis_url` (`redis_server`: no
    credentials, so none reaches the file system and rotating them keeps the name)."""
    return f"{prefix_file_stem(kind, redis_prefix)}-{_digest(redis_server(redis_url))}.jsonl"


def prefix_file_stem(kind: str, redis_prefix: str) -> str:
    """`<kind>-<prefix>-<digest of the prefix>`: the prefix made file-safe for people to read,
    the digest telling apart prefixes that read alike."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", redis_prefix).strip("-")[:60]
    return f"{kind}-{readable}-{_digest(redis_prefix)}"


def redis_server(redis_url: str | None) -> str:
    """Where the keys of `redis_url` live, without credentials: `host:port/db` (Redis's default
    port and db filled in) or `unix:<socket path>/db`; a URL redis-py cannot read, masked."""
    try:
        parts = parse_url(redis_url or "")
    except ValueError:
        return safe_url(redis_url)
    db = parts.get("db", 0)
    if "path" in parts:
        return f"unix:{parts['path']}/{db}"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}/{db}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def record_kind(record: Any) -> str:
    """What a record is, for logs and metrics: its `kind` attribute, else its type's name."""
    return str(getattr(record, "kind", None) or type(record).__name__)


class RecordSpool:
    """An fsync'd append-only file of records waiting for Redis."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_name: str,
        record_type: Any,
        max_bytes: int | None = None,
        rejected_max_bytes: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 (or None: no limit), found {max_bytes}")
        if rejected_max_bytes is not None and rejected_max_bytes < 1:
            raise ValueError(
                "rejected_max_bytes must be >= 1 (or None: the same as max_bytes), found "
                f"{rejected_max_bytes}"
            )
        self.path = Path(directory) / file_name
        self.rejected_path = self.path.with_name(file_name + ".rejected")
        self.record_type = record_type
        self.max_bytes = max_bytes
        self.rejected_max_bytes = max_bytes if rejected_max_bytes is None else rejected_max_bytes
        # called with how many of each kind (`record_kind`; "unreadable" for a torn line) the
        # full `.rejected` file did not take: dropped, so the app can count them
        self.on_not_set_aside: list[Callable[[Counter[str]], object]] = []

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

    def remove_if_empty(self) -> bool:
        """Remove the file when no record waits in it (e.g. one a former version named); returns
        whether it did. Under the lock: an append waiting for it then starts a new file."""
        if not self.path.exists():
            return False
        with self._locked() as handle:
            if os.fstat(handle.fileno()).st_size:
                return False
            self.path.unlink()
            _fsync_directory(self.path.parent)
        return True

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

    def replay(
        self,
        push: Callable[[list[Any]], bool],
        *,
        prepare: Callable[[list[Any]], list[Any]] | None = None,
        on_refused: Callable[[list[tuple[Any, str]]], object] | None = None,
    ) -> int:
        """Push the spooled records with `push`, oldest first; returns how many Redis took.

        `push` gets a list of records and returns True when Redis took them all. When it returns
        False or raises, Redis is taken to be unreachable: the records not yet taken stay in the
        spool, and what it raised is raised again. When it raises `RecordsRefused`, the batch is
        pushed again in halves down to the refused records, which are set aside in
        `<file>.rejected` with the reason, logged and passed to `on_refused` as (record, reason)
        pairs; the others go on, in order. A line that is not a record (torn by a crash
        mid-write) is set aside there too and does not hold back the others.

        `prepare` maps all the records read, once, before any push (e.g. to give each an id from
        its place in the spool); records left for a later replay are written back as prepared,
        so it sees them as this one did.
        """
        with self._locked() as handle:
            handle.seek(0)
            lines = handle.readlines()
            parsed = [self._parse(line) for line in lines]
            numbers = [number for number, record in enumerate(parsed) if record is not None]
            records = [parsed[number] for number in numbers]
            if prepare is not None:
                records = prepare(records)
                for number, record in zip(numbers, records, strict=True):
                    parsed[number] = record
            pusher = _Pusher(records, push)
            try:
                pusher.push_all()
            finally:
                if pusher.settled or not records:  # else nothing changed: the file stays
                    done = numbers[pusher.settled] if pusher.settled < len(records) else len(lines)
                    unreadable = [
                        line
                        for line, record in zip(lines[:done], parsed[:done], strict=True)
                        if record is None and line.strip()
                    ]
                    lost = self._set_aside(unreadable, pusher.refused)
                    rest = [
                        line if record is None else json.dumps(record.to_dict()).encode() + b"\n"
                        for line, record in zip(lines[done:], parsed[done:], strict=True)
                    ]
                    self._keep_only(handle, rest)
                    # reported once out of the spool, the lost after the refused: a scrape in
                    # between never sees a record twice, nor more lost than refused
                    if pusher.refused and on_refused is not None:
                        on_refused(pusher.refused)
                    self._report_lost(lost)
        if pusher.taken:
            logger.info("replayed %d spooled records of %s to redis", pusher.taken, self.path.name)
        return pusher.taken

    def _parse(self, line: bytes) -> Any | None:
        """The record of a line; None for a blank line or one torn by a crash."""
        if not line.strip():
            return None
        try:
            return self.record_type.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):
            return None

    def set_aside(self, refused: list[tuple[Any, str]]) -> None:
        """Set aside records Redis refused on their data that never were in the spool (kept in
        a worker's memory): in `<file>.rejected` with the reason (room permitting), logged."""
        with self._locked():
            self._report_lost(self._set_aside([], refused))

    def _keep_only(self, handle: IO[bytes], rest: list[bytes]) -> None:
        """Leave only `rest` in the spool file, fsync'd."""
        if not rest:
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
            return
        # written beside the spool and renamed over it: a crash leaves the old file or the new
        # one, never half of each; `_locked` sees the rename and locks the new file
        fresh = self.path.with_name(self.path.name + ".replaying")
        with fresh.open("wb") as out:
            out.writelines(rest)
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)
        _fsync_directory(self.path.parent)

    def _set_aside(self, unreadable: list[bytes], refused: list[tuple[Any, str]]) -> Counter[str]:
        """Append torn lines as they are and refused records with their reason, fsync'd, while
        they fit within `rejected_max_bytes`; log both, and what did not fit, which it returns
        by kind for `_report_lost` (caller holds the lock)."""
        if not unreadable and not refused:
            return Counter()
        refused_at = time.time()
        entries = [
            ("unreadable", line if line.endswith(b"\n") else line + b"\n") for line in unreadable
        ]
        entries += [
            (
                record_kind(record),
                json.dumps(
                    {"reason": reason, "refused_at": refused_at, "record": record.to_dict()}
                ).encode("utf-8")
                + b"\n",
            )
            for record, reason in refused
        ]
        with self.rejected_path.open("ab") as out:
            size = os.fstat(out.fileno()).st_size
            fitting = 0
            for _, entry in entries:
                if self.rejected_max_bytes is not None and (
                    size + len(entry) > self.rejected_max_bytes
                ):
                    break
                size += len(entry)
                fitting += 1
            out.writelines(entry for _, entry in entries[:fitting])
            out.flush()
            os.fsync(out.fileno())
        torn_kept = min(fitting, len(unreadable))
        if torn_kept:
            logger.error(
                "%d unreadable line(s) of %s (torn by a crash?) set aside in %s",
                torn_kept,
                self.path.name,
                self.rejected_path,
            )
        self._log_refused(refused[: fitting - torn_kept])
        lost = Counter(kind for kind, _ in entries[fitting:])
        if lost:
            self._log_not_set_aside(lost, size)
        return lost

    def _log_not_set_aside(self, kinds: Counter[str], size: int) -> None:
        """Log entries the full `.rejected` file did not take."""
        what = " and ".join(
            f"{count} {kind} line(s)" if kind == "unreadable" else f"{count} {kind} record(s)"
            for kind, count in kinds.items()
        )
        logger.error(
            "%s is full (%d bytes, limit %d): %s not set aside: lost. Read that file and empty "
            "or move it away, or raise its limit",
            self.rejected_path,
            size,
            self.rejected_max_bytes,
            what,
            extra={
                "fields": {
                    "event": "spool_rejected_full",
                    "kinds": dict(kinds),
                    "file": str(self.rejected_path),
                }
            },
        )

    def _report_lost(self, kinds: Counter[str]) -> None:
        """Tell the `on_not_set_aside` listeners what the full `.rejected` file did not take."""
        if kinds:
            for listener in self.on_not_set_aside:
                listener(kinds)

    def _log_refused(self, refused: list[tuple[Any, str]]) -> None:
        """One error line per kind of record and reason (not one per record) set aside."""
        for (kind, reason), count in Counter(
            (record_kind(record), reason) for record, reason in refused
        ).items():
            logger.error(
                "redis refused %d %s record(s) of spool %s (%s): set aside in %s; the other "
                "records go on",
                count,
                kind,
                self.path.name,
                reason,
                self.rejected_path,
                extra={
                    "fields": {
                        "event": "spool_records_refused",
                        "kind": kind,
                        "reason": reason,
                        "count": count,
                        "file": str(self.rejected_path),
                    }
                },
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        """The spool file, opened to append and read, under its exclusive lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a+b")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                if _is_at(handle.fileno(), self.path):
                    break
            except BaseException:
                handle.close()
                raise
            handle.close()  # a replay renamed a new file over it meanwhile: lock that one
        with handle:
            yield handle


class _Pusher:
    """Pushes records oldest first, in halves around those Redis refuses on their data."""

    def __init__(self, records: list[Any], push: Callable[[list[Any]], bool]) -> None:
        self.records = records
        self.push = push
        self.settled = 0  # the leading records taken or refused: done with
        self.taken = 0
        self.refused: list[tuple[Any, str]] = []

    def push_all(self) -> None:
        if self.records:
            self._push(0, len(self.records))

    def _push(self, start: int, end: int) -> bool:
        """Whether records[start:end] were all taken or set aside (False: Redis is down)."""
        try:
            if not self.push(self.records[start:end]):
                return False
        except RecordsRefused as exc:
            if end - start == 1:
                self.refused.append((self.records[start], str(exc) or type(exc).__name__))
                self.settled = end
                return True
            middle = (start + end) // 2
            return self._push(start, middle) and self._push(middle, end)
        self.taken += end - start
        self.settled = end
        return True


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the one at `path` (not one renamed over since)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (found.st_dev, found.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
