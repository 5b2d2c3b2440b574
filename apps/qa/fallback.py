"""Answering through a Redis outage: session and feedback stores that fall back to memory.

`RedisFallback` runs a Redis call and, when Redis is unreachable (connection refused, timeout),
runs the in-memory twin instead, through the circuit breaker of the Redis client
(`core.redis_breaker`, shared with the rate limiter): after a connection failure the next calls
skip Redis for `retry_s`, then one call probes it while the others still skip it. Only
connection failures open it: bad data (a corrupt value, a Redis error reply) still raises, so a
hostile request never takes Redis away from everyone else.

What a worker keeps meanwhile reaches Redis again. `FallbackRecordLog` keeps records in an
fsync'd spool on local disk (`streaming.record_spool`, one file per Redis prefix and server,
shared by the workers of a host), so they survive the worker's kill; in its memory only when
the spool refuses them (full, or the disk fails), where past `max_entries` per log the oldest
are dropped (logged, counted). `RecordFlusher` writes the spool, then the memory, to Redis once
it answers (no request needed), also at a worker's start: a worker replays what a killed one
spooled. Each record gets a write id before its first write (`streaming.write_ids`), kept with
it, and Redis writes an id once: a write Redis carried out after the client timed out is not
written again by the flush (logged, counted). A record Redis refuses on its data (an error
reply while it takes other writes) is set aside, logged and counted, and the others go on.
`RememberingHandoffStore` remembers which sessions were last seen with a person, so that their
messages are refused (503) rather than answered by the bot while the agent desk cannot be read;
while the breaker is open it reads the desk only for those sessions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from redis.exceptions import DataError, ResponseError

from threefold.apps.qa.feedback import MemoryRecordLog, RecordLog
from threefold.apps.qa.handoff_queue import ACTIVE, Conversation, HandoffStore, Update
from threefold.apps.qa.sessions import (
    MemorySessionStore,
    Session,
    SessionChange,
    SessionStore,
    valid_session_id,
)
from threefold.core.redis_breaker import CONNECTION_FAILURES, DEFAULT_RETRY_S, RedisBreaker
from threefold.streaming import record_spool
from threefold.streaming.record_spool import RecordSpool, RecordsRefused, SpoolFull
from threefold.streaming.write_ids import new_write_id, spooled_write_id

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEGRADED_REASON = "redis unavailable"
SPOOL_FULL, SPOOL_DISK_ERROR = "full", "disk_error"  # why the spool refused a record
# records dropped from a full memory: an error line at the first of an outage, then every this many
DROPS_PER_LOG_LINE = 1000
SPOOL_KIND = "records"  # spool files are named records-<prefix>-<digests>.jsonl


class RedisFallback:
    """Redis calls with an in-memory fallback, through a circuit breaker (`breaker`: the Redis
    client's, `core.redis_breaker.breaker_for`; None: a breaker of its own, open for `retry_s`
    after a connection failure)."""

    def __init__(
        self, breaker: RedisBreaker | None = None, *, retry_s: float = DEFAULT_RETRY_S
    ) -> None:
        self.breaker = breaker if breaker is not None else RedisBreaker(retry_s=retry_s)

    @property
    def retry_s(self) -> float:
        return self.breaker.retry_s

    @property
    def is_open(self) -> bool:
        return self.breaker.is_open

    def degraded_reason(self) -> str | None:
        """ "redis unavailable" while the breaker is open, else None."""
        return DEGRADED_REASON if self.is_open else None

    def call(self, operation: str, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        """`primary()` unless the breaker is open or Redis is unreachable; then `fallback()`."""

        def without_redis() -> T:
            cause = self.breaker.first_fallback("qa")
            if cause is not None:
                logger.warning(
                    "redis unavailable during %s (%s: %s); answering without it for %.0fs",
                    cause.operation,
                    cause.error_type,
                    cause.message,
                    self.retry_s,
                )
            return fallback()

        return self.breaker.call(operation, primary, without_redis)

    def attempt(
        self, operation: str, *, always: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """`RedisBreaker.attempt`: a block of Redis calls without a fallback."""
        return self.breaker.attempt(operation, always=always)


class FallbackSessionStore:
    """A `SessionStore` in Redis that keeps answering from memory while Redis is down.

    During an outage a known session id this worker never saw comes back empty (a stateless
    turn: no memory of earlier messages) rather than as unknown.
    """

    def __init__(
        self, primary: SessionStore, memory: MemorySessionStore, breaker: RedisFallback
    ) -> None:
        self.primary = primary
        self.memory = memory
        self.breaker = breaker

    def create(self) -> Session:
        return self.breaker.call("create_session", self.primary.create, self.memory.create)

    def get(self, session_id: str) -> Session | None:
        if not valid_session_id(session_id):
            return None

        def from_memory() -> Session:
            return self.memory.get(session_id) or Session(id=session_id, created=time.time())

        return self.breaker.call("get_session", lambda: self.primary.get(session_id), from_memory)

    def save(self, session: Session) -> None:
        self.breaker.call(
            "save_session", lambda: self.primary.save(session), lambda: self.memory.save(session)
        )

    def update(self, session_id: str, change: SessionChange) -> Session | None:
        def in_memory() -> Session | None:
            if not valid_session_id(session_id):
                return None
            session = self.memory.update(session_id, change)
            if session is None:  # as in `get`: a session this worker never saw starts empty
                session = Session(id=session_id, created=time.time())
                change(session)
                self.memory.save(session)
            return session

        return self.breaker.call(
            "update_session", lambda: self.primary.update(session_id, change), in_memory
        )


class BatchRecordLog(RecordLog, Protocol):
    """A shared `RecordLog` that also appends many records at once (all of them or none), each
    once by its write id, and says whether it answers (`ping` raises what the store raises when
    it does not) and whether it takes writes now (`takes_writes`)."""

    def append_many(self, records: Sequence[tuple[str, dict[str, Any], str]]) -> Counter[str]:
        """Append (log name, record, write id) triples; how many of each log it had already."""
        ...

    def ping(self) -> None: ...

    def takes_writes(self) -> bool: ...


@dataclass(frozen=True)
class KeptRecord:
    """One record of a named log, as the spool keeps it (one JSON line), with the id its write
    to Redis is done once by (None: spooled by an earlier version, see `with_spool_ids`)."""

    log: str
    record: dict[str, Any]
    write_id: str | None = None

    @property
    def kind(self) -> str:
        """The log it belongs to (feedback, unanswered, agent_replies): logs and metrics."""
        return self.log

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"log": self.log, "record": self.record}
        if self.write_id is not None:
            data["write_id"] = self.write_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeptRecord:
        """TypeError/KeyError for a line that is not a kept record (the spool sets it aside)."""
        log, record, write_id = data["log"], data["record"], data.get("write_id")
        if not isinstance(log, str) or not isinstance(record, dict):
            raise TypeError(
                f"expected a log name and a record, found {type(log).__name__} "
                f"and {type(record).__name__}"
            )
        if write_id is not None and not (isinstance(write_id, str) and write_id):
            raise TypeError(f"expected a write id (a string), found {write_id!r}")
        return cls(log, record, write_id)

    def as_write(self) -> tuple[str, dict[str, Any], str]:
        """What `BatchRecordLog.append_many` takes (the record must have its write id)."""
        if self.write_id is None:
            raise ValueError(
                f"the {self.log} record has no write id, so its write could be repeated; keep "
                "records with one (`new_write_id`) or replay the spool with `with_spool_ids`"
            )
        return self.log, self.record, self.write_id


def with_spool_ids(kept: Sequence[KeptRecord]) -> list[KeptRecord]:
    """Replayed spool records as written: one an earlier version spooled without an id gets one
    from its place in the spool and its content, the same at every replay of that spool."""
    return [
        k if k.write_id else replace(k, write_id=spooled_write_id(place, k.to_dict()))
        for place, k in enumerate(kept)
    ]


class _InMemory(dict[str, Any]):
    """A record kept in memory with its write id: a dict, so the memory log reads it as any."""

    __slots__ = ("write_id",)

    def __init__(self, kept: KeptRecord) -> None:
        super().__init__(kept.record)
        self.write_id = kept.write_id


def _from_memory(name: str, record: dict[str, Any]) -> KeptRecord:
    """A record drained from memory; one put there without a write id (not by `_keep`) gets
    one now, and keeps it when it is put back."""
    return KeptRecord(name, dict(record), getattr(record, "write_id", None) or new_write_id())


def spool_file_name(redis_prefix: str, redis_url: str) -> str:
    """The spool file of the records under `redis_prefix` on the Redis at `redis_url`: records
    are only ever replayed to the prefix and server they were kept for, whatever else shares
    the spool directory (`streaming.record_spool.spool_file_name`, kind "records")."""
    return record_spool.spool_file_name(SPOOL_KIND, redis_prefix, redis_url)


def former_spool_file_name(redis_prefix: str) -> str:
    """The spool file name of versions that named it by the prefix only (`adopt_former_spool`)."""
    return f"{record_spool.prefix_file_stem(SPOOL_KIND, redis_prefix)}.jsonl"


def adopt_former_spool(spool: RecordSpool, former: RecordSpool) -> int:
    """Move the records a former version left in `former` (a file named by the prefix only) to
    the end of `spool`, which replays them; returns how many. Each keeps the write id it had, or
    gets the one that version's replay would have given it, so a record that version wrote
    already is not written again. The emptied file (that version leaves one after each replay)
    is removed. When `spool` refuses them (full, disk error) they stay in `former` for the next
    start, logged."""

    def move(kept: list[KeptRecord]) -> bool:
        spool.append(kept)
        return True

    try:
        moved = former.replay(move, prepare=with_spool_ids) if former.pending() else 0
    except OSError as exc:
        logger.error(
            "records spooled by a former version in %s not moved to %s (%s): they wait there "
            "and are moved at the next start",
            former.path,
            spool.path.name,
            exc.strerror or exc,
        )
        return 0
    with contextlib.suppress(OSError):  # an empty file left behind holds nothing
        former.remove_if_empty()
    if moved:
        logger.info(
            "moved %d records spooled by a former version from %s to %s",
            moved,
            former.path.name,
            spool.path.name,
        )
    return moved


class FallbackRecordLog:
    """A `RecordLog` in Redis that keeps records while Redis is down.

    Kept records go to `spool` (on disk, they outlive the worker) or, when there is none or it
    refuses one (full, disk error: logged, `on_spool_refused` listeners get the reason), to
    `memory`; once one waits in memory the later ones do too, so none overtakes an older one.
    Memory keeps the newest `max_entries` per log: each older one dropped is counted
    (`on_dropped` listeners get the log and how many) and logged, once per outage and then every
    DROPS_PER_LOG_LINE drops. They are written to Redis by the next call that reaches it, or by a
    `RecordFlusher` in the background, the spool first; `on_kept` listeners are called whenever
    one is kept. A record Redis refuses on its data is set aside (the spool's `.rejected` file, as
    far as its limit allows; without a spool, the log line), logged, and `on_rejected` listeners
    get its log.
    """

    def __init__(
        self,
        primary: BatchRecordLog,
        memory: MemoryRecordLog,
        breaker: RedisFallback,
        *,
        spool: RecordSpool | None = None,
    ) -> None:
        self.primary = primary
        self.memory = memory
        self.breaker = breaker
        self.spool = spool
        self.on_kept: list[Callable[[], object]] = []
        self.on_spool_refused: list[Callable[[str], object]] = []
        self.on_dropped: list[Callable[[str, int], object]] = []
        self.on_rejected: list[Callable[[str], object]] = []
        self.on_already_written: list[Callable[[str, int], object]] = []
        self._flush_lock = threading.Lock()
        # held to change `memory` and `_flushing_from_memory`, and while choosing spool or memory
        self._keep_lock = threading.Lock()
        self._flushing_from_memory = 0  # drained by a flush, not yet written or put back
        self._spool_refusing = False
        self._dropped_this_outage = 0

    def append(self, name: str, record: dict[str, Any]) -> None:
        # the id comes first: a write that times out may still be carried out by Redis, and the
        # flush that writes the kept record again must find it written
        kept = KeptRecord(name, record, new_write_id())

        def to_redis() -> None:
            self.flush()
            self._write([kept])

        self.breaker.call("append_" + name, to_redis, lambda: self._keep([kept]))

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        def from_redis() -> list[dict[str, Any]]:
            self.flush()
            return list(self.primary.read(name))

        records = self.breaker.call(
            "read_" + name, from_redis, lambda: list(self.memory.read(name))
        )
        yield from records

    def pending(self) -> int:
        """How many records wait for Redis: in the spool (any worker's) and in this process."""
        return self.spooled() + self.in_memory()

    def in_memory(self) -> int:
        """How many records are kept in this process (lost if it is killed)."""
        return len(self.memory)

    def spooled(self) -> int:
        """How many records wait in the spool, kept by any worker of this host."""
        return 0 if self.spool is None else self.spool.count()

    def flush(self) -> int:
        """Move the spooled records, then those kept in memory, to Redis, oldest first; returns
        how many.

        Raises what Redis raises; the records not written stay kept, ahead of any kept meanwhile
        (records kept while a flush writes those of memory go to memory too, never to the spool,
        which the next flush writes first). One flush at a time, so a record appended meanwhile
        never overtakes older kept ones. The spool goes to Redis in one transaction, under its
        lock: a worker flushing at the same time finds it empty. A record whose write Redis
        carried out unheard (a timeout) is not written again: counted in the total, reported to
        `on_already_written`.
        """
        with self._flush_lock:
            replayed = self._replay_spool()
            with self._keep_lock:
                pending = [_from_memory(name, record) for name, record in self.memory.drain()]
                self._flushing_from_memory = len(pending)
            written = 0
            try:
                for position, kept in enumerate(pending):
                    try:
                        self._write([kept])
                    except BaseException as exc:
                        if self._refused_on_its_data(exc):
                            self._reject([(kept, _reason(exc))])
                            continue
                        # back in front of any record kept meanwhile (by a request that found
                        # the breaker open): those are newer and must reach Redis after these
                        with self._keep_lock:
                            self._put_back(pending[position:])
                        self._kept()
                        raise
                    written += 1
            finally:
                with self._keep_lock:
                    self._flushing_from_memory = 0
                    if not len(self.memory):
                        self._dropped_this_outage = 0  # the outage is over for this worker
        if pending:
            logger.info("redis is back: %d records kept in memory written to it", written)
        return replayed + written

    def _replay_spool(self) -> int:
        if self.spool is None or not self.spool.pending():
            return 0
        self.primary.ping()  # outside the spool's lock: while Redis is down, appends never wait
        return self.spool.replay(
            self._write_spooled, prepare=with_spool_ids, on_refused=self._count_rejected
        )

    def _write_spooled(self, kept: list[KeptRecord]) -> bool:
        """Push spooled records; `RecordsRefused` when Redis refuses them on their data."""
        try:
            self._write(kept)
        except Exception as exc:
            if self._refused_on_its_data(exc):
                raise RecordsRefused(_reason(exc)) from exc
            raise
        return True

    def _write(self, kept: Sequence[KeptRecord]) -> None:
        """Append the records to Redis, each once: those Redis had already (a write it carried
        out after this worker's timeout) are logged and reported to `on_already_written`."""
        already = self.primary.append_many([k.as_write() for k in kept])
        if not already:
            return
        for name, count in sorted(already.items()):
            for listener in self.on_already_written:
                listener(name, count)
        logger.info(
            "%d of %d records were in redis already (a write carried out after its timeout, or "
            "a spool replayed again): not written again",
            already.total(),
            len(kept),
            extra={"fields": {"event": "qa_records_already_written", "kinds": dict(already)}},
        )

    def _refused_on_its_data(self, exc: BaseException) -> bool:
        """Whether Redis answered `exc` (an error reply, not a lost connection) while it takes
        other writes: the records are at fault, writing them again fails again. A Redis refusing
        every write for now (READONLY replica, OOM, MISCONF) refuses the probe too: they wait."""
        return isinstance(exc, ResponseError | DataError) and self.primary.takes_writes()

    def _reject(self, refused: list[tuple[KeptRecord, str]]) -> None:
        """Set aside records kept in memory that Redis refused on their data: counted refused
        first, so a scrape never sees one lost (no room to set it aside) before it is refused."""
        self._count_rejected(refused)
        if self.spool is not None:
            self.spool.set_aside(refused)
        else:
            for kept, reason in refused:
                logger.error(
                    "redis refused the %s record kept in memory (%s); no spool to set it aside "
                    "in, so it is only in this line: %s",
                    kept.log,
                    reason,
                    kept.record,
                    extra={"fields": {"event": "qa_record_rejected", "kind": kept.log}},
                )

    def _count_rejected(self, refused: list[tuple[KeptRecord, str]]) -> None:
        for kept, _ in refused:
            for listener in self.on_rejected:
                listener(kept.log)

    def _keep(self, records: list[KeptRecord]) -> None:
        with self._keep_lock:
            if not self._spool_took(records):
                dropped: Counter[str] = Counter()
                for kept in records:
                    dropped[kept.log] += self.memory.append(kept.log, _InMemory(kept))
                self._dropped(dropped)
        self._kept()

    def _put_back(self, records: list[KeptRecord]) -> None:
        """`memory.put_back`, counting what a full log drops (rare: a flush failed midway)."""
        self._dropped(self.memory.put_back([(kept.log, _InMemory(kept)) for kept in records]))

    def _dropped(self, dropped: Counter[str]) -> None:
        """Count records a full memory dropped; log once per outage, then every
        DROPS_PER_LOG_LINE (caller holds `_keep_lock`)."""
        dropped = +dropped  # only the logs that dropped some
        if not dropped:
            return
        for name, count in dropped.items():
            for listener in self.on_dropped:
                listener(name, count)
        earlier = self._dropped_this_outage
        self._dropped_this_outage += dropped.total()
        if (
            earlier
            and earlier // DROPS_PER_LOG_LINE == self._dropped_this_outage // DROPS_PER_LOG_LINE
        ):
            return
        logger.error(
            "records lost: this worker's memory keeps at most %d records per log while redis "
            "is down and the spool does not take them; it dropped the oldest %s, %d since the "
            "outage began (qa_records_dropped_total; logged again every %d)",
            self.memory.max_entries,
            ", ".join(f"{count} {name}" for name, count in sorted(dropped.items())),
            self._dropped_this_outage,
            DROPS_PER_LOG_LINE,
            extra={
                "fields": {
                    "event": "qa_records_dropped",
                    "kinds": sorted(dropped),
                    "dropped_this_outage": self._dropped_this_outage,
                }
            },
        )

    def _spool_took(self, records: list[KeptRecord]) -> bool:
        """Whether the spool took the records (not while older ones wait in memory or are being
        flushed from it: the next flush writes the spool first); a refusal is logged once per
        streak, counted each time (caller holds `_keep_lock`)."""
        if self.spool is None or self.in_memory() or self._flushing_from_memory:
            return False
        try:
            self.spool.append(records)
        except OSError as exc:
            reason = SPOOL_FULL if isinstance(exc, SpoolFull) else SPOOL_DISK_ERROR
            if not self._spool_refusing:
                logger.error(
                    "record spool %s refused a record (%s): records are kept in this worker's "
                    "memory until redis answers, and lost if it is killed meanwhile",
                    self.spool.path,
                    exc.strerror or exc,
                    extra={"fields": {"event": "qa_spool_refused", "reason": reason}},
                )
            self._spool_refusing = True
            for listener in self.on_spool_refused:
                listener(reason)
            return False
        self._spool_refusing = False
        return True

    def _kept(self) -> None:
        for listener in self.on_kept:
            listener()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RecordFlusher:
    """Writes the records a `FallbackRecordLog` kept to Redis from a daemon thread, so they
    reach Redis soon after it is back even when no request comes.

    The thread sleeps while nothing is kept (a kept record wakes it). After a failed attempt it
    waits `first_retry_s`, doubling up to `max_retry_s`, and records kept meanwhile do not cut
    that wait short. With a `breaker` an attempt goes through it (skipped while it is open, so
    at most the probe reaches Redis, and a successful flush closes it). `stop()` tries a last
    flush, open breaker or not.
    """

    def __init__(
        self,
        log: FallbackRecordLog,
        *,
        first_retry_s: float = 1.0,
        max_retry_s: float = 30.0,
        breaker: RedisFallback | None = None,
    ) -> None:
        if not 0 < first_retry_s <= max_retry_s:
            raise ValueError(
                "expected 0 < first_retry_s <= max_retry_s, found "
                f"first_retry_s={first_retry_s} and max_retry_s={max_retry_s}"
            )
        self.log = log
        self.breaker = breaker
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        log.on_kept.append(self._wake.set)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (a no-op while it runs); records kept before are flushed at once."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self._wake.set()
            self._thread = threading.Thread(target=self._run, name="qa-record-flush", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after one last flush attempt (waits at most `timeout_s`)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stopping.set()
            self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("record flush thread still busy after %.0fs; left running", timeout_s)

    def _run(self) -> None:
        retry_s = self.first_retry_s
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stopping.is_set() and not self._attempt():
                self._stopping.wait(retry_s)
                retry_s = min(retry_s * 2, self.max_retry_s)
            retry_s = self.first_retry_s
        if not self._attempt(last=True):
            logger.warning(
                "record flush stopped: %d records not written to redis (spooled ones wait on "
                "disk for the next worker; any kept in this worker's memory are lost)",
                self.log.pending(),
            )

    def _attempt(self, *, last: bool = False) -> bool:
        """One flush when records are kept: False when Redis refused them (they stay kept)."""
        if not self.log.pending():
            return True
        through_breaker = (
            self.breaker.attempt("flush_records", always=last)
            if self.breaker
            else contextlib.nullcontext()
        )
        try:
            with through_breaker:
                self.log.flush()
        except CONNECTION_FAILURES as exc:
            logger.info(
                "redis still unavailable (%s): %d records waiting for it",
                type(exc).__name__,
                self.log.pending(),
            )
            return False
        except Exception:  # a Redis error reply: logged, tried again later, never dropped
            logger.exception("writing %d kept records to redis failed", self.log.pending())
            return False
        return True


@dataclass(frozen=True)
class _Seen:
    """The latest state of a session's conversation this worker saw: its `progress`, its status
    (None: moved on from the status it had, to one this worker has not read), when (`at`, its
    clock) and the count of notes then (`note`: a list started later knows more)."""

    progress: tuple[float, float]
    status: str | None
    at: float
    note: int


class RememberingHandoffStore:
    """A `HandoffStore` that remembers which sessions it last saw with a person.

    Every read and transition notes the session's conversation, unless this worker already saw
    it further on (`Conversation.progress`): a read that started before a close and ends after
    it teaches nothing. A session noted as waiting (or claimed) that a later list of waiting (or
    claimed) conversations leaves out has moved on: claimed or ended by another worker, no
    longer remembered with a person. `with_person(session_id)` answers from that memory when the
    store cannot be read: True when the latest state seen, within `ttl_s`, was waiting or
    claimed. Bounded to the `max_sessions` most recently seen.

    With a `breaker` its calls go through it, so their connection failures open it; while it is
    open `get` raises `BreakerOpen` (a redis ConnectionError) at once, without waiting for Redis,
    except for a session last seen with a person: its message would be refused otherwise, so the
    desk is read (the bot answers the others, as it would after a timeout). The console's calls
    (`open`, `update`, `list`) always try Redis.
    """

    def __init__(
        self,
        primary: HandoffStore,
        *,
        ttl_s: float,
        max_sessions: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        breaker: RedisFallback | None = None,
    ) -> None:
        self.primary = primary
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self.breaker = breaker
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, _Seen] = OrderedDict()  # least recently noted first
        self._notes = 0

    def open(self, conversation: Conversation, *, max_waiting: int | None = None) -> Conversation:
        opened = self._through_breaker(
            "open_handoff", lambda: self.primary.open(conversation, max_waiting=max_waiting)
        )
        self._note(opened)
        return opened

    def get(self, session_id: str) -> Conversation | None:
        conversation = self._through_breaker(
            "get_handoff",
            lambda: self.primary.get(session_id),
            always=self.with_person(session_id),
        )
        if conversation is not None:
            self._note(conversation)
        return conversation

    def update(self, session_id: str, change: Update) -> Conversation:
        conversation = self._through_breaker(
            "update_handoff", lambda: self.primary.update(session_id, change)
        )
        self._note(conversation)
        return conversation

    def list(self, status: str, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        with self._lock:
            started = self._notes
        found = self._through_breaker(
            "list_handoffs", lambda: self.primary.list(status, limit=limit, offset=offset)
        )
        for conversation in found:
            self._note(conversation)
        if limit is not None or offset:
            return found  # a page: what it leaves out may be on another
        listed = {conversation.session_id for conversation in found}
        with self._lock:
            moved_on = [
                (session_id, seen)
                for session_id, seen in self._seen.items()
                if seen.status == status and seen.note <= started and session_id not in listed
            ]
            for session_id, seen in moved_on:  # past `status`: a read showing it is older
                waiting_since, stage = seen.progress
                self._seen[session_id] = replace(
                    seen, progress=(waiting_since, stage + 0.5), status=None
                )
        return found

    def _through_breaker(self, operation: str, call: Callable[[], T], *, always: bool = True) -> T:
        """`call()` through the breaker, if any (`always`: also while it is open)."""
        if self.breaker is None:
            return call()
        with self.breaker.attempt(operation, always=always):
            return call()

    def with_person(self, session_id: str) -> bool:
        """Whether the session was last seen waiting for or held by a person (within `ttl_s`)."""
        with self._lock:
            seen = self._seen.get(session_id)
        return seen is not None and seen.status in ACTIVE and self.clock() - seen.at < self.ttl_s

    def _note(self, conversation: Conversation) -> None:
        session_id, progress = conversation.session_id, conversation.progress
        with self._lock:
            known = self._seen.get(session_id)
            if known is not None and progress < known.progress:
                return
            self._notes += 1
            now = self.clock()
            self._seen[session_id] = _Seen(progress, conversation.status, now, self._notes)
            self._seen.move_to_end(session_id)
            while self._seen and (
                len(self._seen) > self.max_sessions
                or now - next(iter(self._seen.values())).at >= self.ttl_s
            ):
                self._seen.popitem(last=False)
