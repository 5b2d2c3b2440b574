"""Redis state shared by API workers: cached rec lists, user event histories, the shared event
log every worker counts, item vectors, the tuned combiner and the catalog change log. Every call
degrades: when Redis is down the caller gets None/False and the failure is counted and logged
once; the client's circuit breaker (`core.redis_breaker`, shared with the rate limiter) then
skips Redis for `retry_seconds` and lets one probe through. Only connection failures open it: a
call that fails on its data (an error reply, a value Redis cannot take) fails alone.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from threefold.apps.recs.catalog import Item
from threefold.apps.recs.events import Event
from threefold.apps.recs.item_vectors import DIGEST_BYTES, text_digest
from threefold.apps.recs.metrics import RecsMetrics
from threefold.core.redis_breaker import CONNECTION_FAILURES, BreakerOpen, RedisBreaker, breaker_for
from threefold.streaming.connections import RedisSettings, redis_client
from threefold.streaming.record_spool import redis_takes_writes
from threefold.streaming.write_ids import WRITE_GUARD_SECONDS, WRONG_TYPE_LUA

logger = logging.getLogger(__name__)
T = TypeVar("T")
# vectors per Redis call: ~3 MB at 384 floats; 200k in one HSET timed out (0.25 s socket timeout)
VECTOR_BATCH = 2_000
# item id -> text digest + vector (the old 'vectors' hash held bare vectors, whatever the text)
VECTORS_KEY = "item-vectors"
LEGACY_VECTORS_KEY = "vectors"
CACHE_EPOCH_KEY = "recs-epoch"  # per user: a new value at each invalidation
SHARED_EVENTS_KEY = "events-log"  # a stream of every posted event, in the order Redis took them
SHARED_EVENTS_BATCH = 10_000  # stream entries per read
# while another type stays at the shared log key, its error line is repeated this often at most
SHARED_LOG_REMINDER_SECONDS = 600.0
APPEND_BATCH = 500  # events per append script: one API batch is one round trip
# catalog changes per append to the change log: ~1.3 MB of upserts at 384 floats, one API batch
CHANGE_BATCH = 500
# catalog changes per read of the change log (~2.6 MB of upserts at 384 floats): the whole log in
# one LRANGE timed out after a large import (100k changes, ~250 MB), at every retry again
CHANGE_READ_BATCH = 1_000
# `event-written:<write id>`: the event was stored, kept WRITE_GUARD_SECONDS (a day, as long as a
# client's event_id is claimed); about 125 bytes of Redis memory per event posted in the last day.
WRITE_GUARD_KEY = "event-written"
# KEYS: the shared log, then per event its guard, history and purchased set; ARGV: history
# limit, log length, guard TTL, then per event its record and purchased item ('' if none).
# Returns how many events it wrote: one whose guard exists was written before and is skipped.
# All or nothing: a key of another type (another app under this prefix) fails the call before
# anything is written, so no event is left with its guard set and its writes half done.
APPEND_EVENTS_SCRIPT = (
    WRONG_TYPE_LUA
    + """
local events = (#KEYS - 1) / 3
local bad = wrong_type(KEYS[1], 'stream', 'event')
for i = 0, events - 1 do
  bad = bad or wrong_type(KEYS[3 + 3 * i], 'list', 'event')
    or wrong_type(KEYS[4 + 3 * i], 'set', 'event')
end
if bad then
  return bad
end
local limit, maxlen, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local written = 0
for i = 0, events - 1 do
  if redis.call('SET', KEYS[2 + 3 * i], '1', 'NX', 'EX', ttl) then
    local history, record, item = KEYS[3 + 3 * i], ARGV[4 + 2 * i], ARGV[5 + 2 * i]
    redis.call('RPUSH', history, record)
    redis.call('LTRIM', history, -limit, -1)
    if item ~= '' then
      redis.call('SADD', KEYS[4 + 3 * i], item)
    end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'event', record)
    written = written + 1
  end
end
return written
"""
)


class RedisState:
    """All Redis access of the recs app, behind its client's circuit breaker."""

    def __init__(
        self,
        settings: RedisSettings,
        *,
        prefix: str,
        metrics: RecsMetrics,
        ttl_seconds: int = 300,
        timeout_seconds: float = 0.25,
        retry_seconds: float = 5.0,
        history_limit: int = 200,
        shared_events_max: int = 1_000_000,
        write_guard_seconds: int = WRITE_GUARD_SECONDS,
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self.prefix = prefix
        self.metrics = metrics
        self.ttl_seconds = ttl_seconds
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self.history_limit = history_limit
        self.shared_events_max = shared_events_max
        self.write_guard_seconds = write_guard_seconds
        self._connection: tuple[Any, RedisBreaker] | None = None  # the client, its breaker
        self._append_script: Any = None
        self._lock = threading.Lock()
        self._shared_log_found: str | None = None  # another type at the shared log key, if so
        self._shared_log_logged = float("-inf")  # when its error line was last logged

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> tuple[Any, RedisBreaker]:
        """The redis-py client (it connects at its first command) and its breaker, made once:
        with the client, so whatever is given `client()` pauses `retry_seconds` too."""
        if self._connection is not None:  # every Redis call comes here: no lock once made
            return self._connection
        with self._lock:
            if self._connection is None:
                client = redis_client(
                    self.settings,
                    socket_timeout=self.timeout_seconds,
                    socket_connect_timeout=self.timeout_seconds,
                    retry_on_timeout=False,
                )
                self._connection = client, breaker_for(client, retry_s=self.retry_seconds)
            return self._connection

    def client(self) -> Any | None:
        """The redis-py client (connects lazily), or None when no Redis URL is configured."""
        return None if self.url is None else self._connect()[0]

    def _call(self, operation: str, action: Callable[[Any], T]) -> T | None:
        """Run `action(client)` through the breaker; None while it skips Redis, or on a Redis
        failure (counted; logged, a connection failure once per outage)."""
        if self.url is None:
            return None
        client, breaker = self._connect()
        try:
            with breaker.attempt(operation):
                result = action(client)
        except CONNECTION_FAILURES as exc:
            if not isinstance(exc, BreakerOpen):  # a skipped call is no failure
                self.metrics.redis_errors.labels(operation).inc()
            self.metrics.redis_up.set(0)
            if (cause := breaker.first_fallback("recs")) is not None:
                logger.warning(
                    "redis unavailable during %s (%s: %s); serving without it for %.0fs",
                    cause.operation,
                    cause.error_type,
                    cause.message,
                    breaker.retry_s,
                )
            return None
        except Exception as exc:  # bad data or an error reply: this call fails, Redis stays in use
            self.metrics.redis_errors.labels(operation).inc()
            # another type at the shared log key: its own line says so (`wrong_shared_log_type`)
            if not (self._on_shared_log(operation, exc) and self.wrong_shared_log_type()):
                logger.warning("redis %s failed (%s: %s)", operation, type(exc).__name__, exc)
            return None
        self.metrics.redis_up.set(1)
        return result

    @property
    def available(self) -> bool:
        return self._call("ping", lambda r: bool(r.ping())) is True

    def takes_writes(self) -> bool:
        """Whether Redis takes a write now (`redis_takes_writes`; False while the breaker is
        open): a write that failed then was refused on its data, not for want of Redis."""
        if self.url is None:
            return False
        client, breaker = self._connect()
        return not breaker.skipping and redis_takes_writes(client, self.prefix)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ------------------------------------------------------------------ rec lists
    def get_recs(self, user_id: str, variant: str) -> dict[str, Any] | None:
        """A cached response for this user and query variant; counts hit/miss/unavailable."""
        return self.lookup_recs(user_id, variant)[0]

    def lookup_recs(self, user_id: str, variant: str) -> tuple[dict[str, Any] | None, str | None]:
        """`get_recs`, and the user's cache epoch to pass to `put_recs` with a list ranked now.

        `invalidate` gives the user a new epoch, so a list tagged with another one (ranked from
        a history read before the user's latest event, then cached after its invalidation) is
        a miss, never served.
        """

        def action(r: Any) -> list[Any]:
            pipe = r.pipeline()
            pipe.hget(self._key("recs", user_id), variant)
            pipe.get(self._key(CACHE_EPOCH_KEY, user_id))
            return pipe.execute()

        found = self._call("get_recs", action)
        if found is None:
            self.metrics.record("unavailable")
            return None, None
        raw, epoch = found
        epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
        stored = json.loads(raw) if raw is not None else None
        if not isinstance(stored, dict) or "list" not in stored or stored.get("epoch") != epoch:
            self.metrics.record("miss")
            return None, epoch
        self.metrics.record("hit")
        return stored["list"], epoch

    def put_recs(
        self, user_id: str, variant: str, value: Mapping[str, Any], *, epoch: str | None = None
    ) -> bool:
        """Cache a response ranked after `lookup_recs` answered `epoch` for this user."""
        key = self._key("recs", user_id)

        def action(r: Any) -> bool:
            pipe = r.pipeline()
            pipe.hset(key, variant, json.dumps({"epoch": epoch, "list": value}))
            pipe.expire(key, self.ttl_seconds)
            # the epoch outlives every list tagged with an older one
            pipe.expire(self._key(CACHE_EPOCH_KEY, user_id), 2 * self.ttl_seconds)
            pipe.execute()
            return True

        return self._call("put_recs", action) is True

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        """A ranked list kept by `put_snapshot`; None when unknown, expired or Redis is down."""
        raw = self._call("get_snapshot", lambda r: r.get(self._key("snapshot", snapshot_id)))
        return json.loads(raw) if raw is not None else None

    def put_snapshot(self, snapshot_id: str, value: Mapping[str, Any], ttl_seconds: int) -> bool:
        """Keep a ranked list `ttl_seconds` for the pages after the first (`get_snapshot`)."""
        key = self._key("snapshot", snapshot_id)
        stored = self._call("put_snapshot", lambda r: r.set(key, json.dumps(value), ex=ttl_seconds))
        return stored is True

    def invalidate(self, user_ids: Iterable[str]) -> bool:
        """Drop these users' cached lists and give each a new cache epoch (`lookup_recs`)."""
        users = set(user_ids)
        if not users:
            return True

        def action(r: Any) -> bool:
            pipe = r.pipeline()
            for user_id in users:
                pipe.delete(self._key("recs", user_id))
                epoch_key = self._key(CACHE_EPOCH_KEY, user_id)
                pipe.set(epoch_key, secrets.token_hex(8), ex=2 * self.ttl_seconds)
            pipe.execute()
            return True

        return self._call("invalidate", action) is True

    # ------------------------------------------------------------------ histories
    def append_events(self, events: Sequence[Event]) -> bool:
        """Append events to each user's shared history (capped at `history_limit`), purchases to
        the user's purchased set, and to the shared event log (about the newest
        `shared_events_max`), in order, APPEND_BATCH events per Redis call (one Lua script).

        Each event is written at most once: the script claims `event-written:<write_id>` (SET
        NX, kept `write_guard_seconds`) and skips the event when that id was written before (a
        write Redis carried out after this worker's timeout, a spool replayed again); skipped
        events are counted in `recs_events_already_stored_total`. True when Redis took (or
        already had) every event; on False some leading batches may be stored: storing the
        same events again stores only the rest.

        Raises ValueError for an event without `write_id` (see `events.with_accept_ids`).
        """
        unguarded = [n for n, event in enumerate(events) if not event.write_id]
        if unguarded:
            raise ValueError(
                f"events {unguarded[:5]} have neither an event_id nor an accept_id, so their "
                "write to Redis could be repeated; pass accepted events "
                "(events.with_accept_ids) or replayed ones (events.with_spool_ids)"
            )
        for start in range(0, len(events), APPEND_BATCH):
            batch = events[start : start + APPEND_BATCH]
            written = self._call("append_events", lambda r, b=batch: self._append_batch(r, b))
            if written is None:
                return False
            skipped = len(batch) - written
            if skipped:
                self.metrics.events_already_stored.inc(skipped)
                logger.info(
                    "%d of %d events were in redis already (a write carried out after its "
                    "timeout, or a replayed spool): not stored again",
                    skipped,
                    len(batch),
                    extra={"fields": {"event": "events_already_stored", "skipped": skipped}},
                )
        if events:  # the shared log took them: a stream (again)
            self.shared_log_type_now(None)
        return True

    def _append_batch(self, r: Any, events: Sequence[Event]) -> int:
        """Run the append script over `events`; how many it wrote (the others were stored)."""
        if self._append_script is None:
            self._append_script = r.register_script(APPEND_EVENTS_SCRIPT)
        keys: list[Any] = [self._key(SHARED_EVENTS_KEY)]
        args: list[Any] = [self.history_limit, self.shared_events_max, self.write_guard_seconds]
        for event in events:
            keys += [
                self._key(WRITE_GUARD_KEY, event.write_id or ""),
                self._key("history", event.user_id),
                self._key("purchased", event.user_id),
            ]
            args += [
                json.dumps(event.to_dict()),
                event.item_id if event.event == "purchase" else "",
            ]
        return int(self._append_script(keys=keys, args=args, client=r))

    def wrong_shared_log_type(self) -> str | None:
        """The type Redis holds at the shared event log key when it is not a stream (every
        append fails then); None for a stream, no key, or Redis unavailable. An answer is
        gauged and logged (`shared_log_type_now`)."""
        found = self._call("shared_log_type", lambda r: r.type(self._key(SHARED_EVENTS_KEY)))
        found = found.decode() if isinstance(found, bytes) else found
        if found is None:  # Redis does not answer: that says nothing about the key
            return None
        wrong = None if found in ("stream", "none") else found
        self.shared_log_type_now(wrong)
        return wrong

    def _on_shared_log(self, operation: str, exc: Exception) -> bool:
        """Whether `exc` is a WRONGTYPE reply that may come from the shared log key."""
        text = str(exc)
        if operation == "shared_events":  # XREAD of that key alone
            return text.startswith("WRONGTYPE")
        return operation == "append_events" and text.startswith(
            f"WRONGTYPE {self._key(SHARED_EVENTS_KEY)} "
        )

    def shared_log_type_now(self, wrong: str | None) -> None:
        """Gauge and log another type (`wrong`) at the shared event log key, for the whole
        worker: the appends, the spool's replay, the shared log's reader and /healthz all meet
        it, and it has one fix. One error line when it is found, repeated at most every
        SHARED_LOG_REMINDER_SECONDS while it stays; one info line once the key is fixed."""
        now = time.monotonic()
        with self._lock:
            before = self._shared_log_found
            due = now - self._shared_log_logged >= SHARED_LOG_REMINDER_SECONDS
            if wrong == before and not (wrong is not None and due):
                return
            self._shared_log_found = wrong
            if wrong is not None:
                self._shared_log_logged = now
        self.metrics.shared_log_wrong_type.set(int(wrong is not None))
        key = self._key(SHARED_EVENTS_KEY)
        if wrong is not None:
            logger.error(
                "%s; meanwhile each worker ranks with its last statistics plus the events posted "
                "to it",
                wrong_log_type_reason(self.prefix, wrong),
                extra={"fields": {"event": "shared_log_wrong_type", "key": key, "found": wrong}},
            )
        else:
            logger.info(
                "the shared event log key %s is a stream again: spooled events are stored and "
                "counted by every worker",
                key,
                extra={"fields": {"event": "shared_log_type_fixed", "key": key}},
            )

    def shared_events_after(self, entry_id: str) -> tuple[str, list[Event]] | None:
        """The shared log's events after stream entry `entry_id` ("0-0": all), at most
        SHARED_EVENTS_BATCH, with the id of the last one (`entry_id` when none); None when
        Redis is unavailable."""
        key = self._key(SHARED_EVENTS_KEY)
        found = self._call(
            "shared_events", lambda r: r.xread({key: entry_id}, count=SHARED_EVENTS_BATCH)
        )
        if found is None:
            return None
        self.shared_log_type_now(None)  # read: a stream (again), or no key yet
        entries = found[0][1] if found else []
        last = entries[-1][0] if entries else entry_id
        return (last.decode() if isinstance(last, bytes) else last), [
            event for entry_id, fields in entries if (event := _logged_event(entry_id, fields))
        ]

    def claim_event_ids(self, event_ids: Sequence[str], ttl_seconds: int) -> list[bool] | None:
        """For each id, whether this call saw it first (SET NX, kept `ttl_seconds`); a repeated
        id in `event_ids` is not first either. None when Redis is unavailable."""

        def action(r: Any) -> list[bool]:
            pipe = r.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.set(self._key("event-id", event_id), 1, nx=True, ex=ttl_seconds)
            return [bool(first) for first in pipe.execute()]

        return self._call("claim_event_ids", action)

    def purchased(self, user_id: str) -> set[str] | None:
        """Every item posted as bought by this user (None when Redis is unavailable)."""
        raw = self._call("purchased", lambda r: r.smembers(self._key("purchased", user_id)))
        return None if raw is None else {v.decode() if isinstance(v, bytes) else v for v in raw}

    def history(self, user_id: str) -> list[Event] | None:
        """Events posted through the API for this user (None when Redis is unavailable)."""
        raw = self._call("history", lambda r: r.lrange(self._key("history", user_id), 0, -1))
        if raw is None:
            return None
        return [Event.from_dict(json.loads(entry)) for entry in raw]

    def posted_events(self) -> list[Event] | None:
        """Every user's events posted through the API (the last `history_limit` each), by time.

        What `threefold retrain recs` learns from; None when Redis is unavailable.
        """

        def action(r: Any) -> list[Event]:
            keys = sorted(r.scan_iter(match=self._key("history", "*"), count=1000))
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(key, 0, -1)
            return [
                Event.from_dict(json.loads(raw)) for entries in pipe.execute() for raw in entries
            ]

        events = self._call("posted_events", action)
        return None if events is None else sorted(events, key=lambda e: e.timestamp)

    # ------------------------------------------------------------------ item vectors
    def get_vectors(self, model_id: str, items: Sequence[Item]) -> dict[str, np.ndarray]:
        """Stored vectors of these items' current texts, by item id, read VECTOR_BATCH at a time.

        Each value is the digest of the text it embeds followed by the float32 vector: an item
        whose text changed since (or that is absent) is left out, to be embedded again.
        """
        found: dict[str, np.ndarray] = {}
        key = self._key(VECTORS_KEY, model_id)
        for start in range(0, len(items), VECTOR_BATCH):
            batch = list(items[start : start + VECTOR_BATCH])
            ids = [item.item_id for item in batch]
            raw = self._call("get_vectors", lambda r, ids=ids: r.hmget(key, ids))
            if raw is None:
                break
            found.update(
                (item.item_id, np.frombuffer(value[DIGEST_BYTES:], dtype=np.float32).copy())
                for item, value in zip(batch, raw, strict=True)
                if value is not None and value[:DIGEST_BYTES] == text_digest(item.text)
            )
        return found

    def drop_legacy_vectors(self) -> int | None:
        """Delete the bare-vector hashes of earlier versions (`<prefix>vectors:<model id>`,
        1.5 GB at a million items, never read now); the number deleted (None when down)."""

        def drop(r: Any) -> int:
            keys = list(r.scan_iter(match=self._key(LEGACY_VECTORS_KEY, "*"), count=1000))
            return int(r.unlink(*keys)) if keys else 0

        return self._call("drop_legacy_vectors", drop)

    def put_vectors(
        self, model_id: str, items: Iterable[Item], vectors: Mapping[str, np.ndarray]
    ) -> bool:
        """Store the vectors of those `items` that have one in `vectors`, each after its text's
        digest, VECTOR_BATCH at a time (one call for a whole catalog would time out)."""
        key = self._key(VECTORS_KEY, model_id)
        values = [
            (item.item_id, text_digest(item.text) + np.asarray(vector, np.float32).tobytes())
            for item in items
            if (vector := vectors.get(item.item_id)) is not None
        ]
        for start in range(0, len(values), VECTOR_BATCH):
            mapping = dict(values[start : start + VECTOR_BATCH])
            if self._call("put_vectors", lambda r, m=mapping: r.hset(key, mapping=m)) is None:
                return False
        return True

    # ------------------------------------------------------------------ tuned combiner
    def get_combiner(self, model_id: str) -> dict[str, Any] | None:
        """The combiner `prepare_recs` tuned for this encoder (None when absent or down)."""
        raw = self._call("get_combiner", lambda r: r.get(self._key("combiner", model_id)))
        return json.loads(raw) if raw else None

    def put_combiner(self, model_id: str, value: Mapping[str, Any]) -> bool:
        return (
            self._call(
                "put_combiner", lambda r: r.set(self._key("combiner", model_id), json.dumps(value))
            )
            is True
        )

    # ------------------------------------------------------------------ audit trail
    def append_audit(self, record: Mapping[str, Any], *, limit: int = 100_000) -> bool:
        """Append one admin action to `<prefix>audit` (newest last, capped at `limit`)."""
        key = self._key("audit")

        def action(r: Any) -> bool:
            pipe = r.pipeline()
            pipe.rpush(key, json.dumps(record))
            pipe.ltrim(key, -limit, -1)
            pipe.execute()
            return True

        return self._call("append_audit", action) is True

    # ------------------------------------------------------------------ catalog changes
    def publish_changes(
        self, changes: Sequence[Mapping[str, Any]]
    ) -> tuple[int, str | None] | None:
        """Append changes (at most `CHANGE_BATCH`) to the catalog change log in one round trip;
        (its new length, the `id` of the change before the first of them: None when there is
        none, or it was published without an id)."""
        key = self._key("catalog", "changes")

        def action(r: Any) -> tuple[int, str | None]:
            entries = [json.dumps(change) for change in changes]
            pipe = r.pipeline().rpush(key, *entries).lindex(key, -len(entries) - 1)
            length, previous = pipe.execute()
            return int(length), _change_id(previous) if length > len(entries) else None

        return self._call("publish_changes", action)

    def changes_since(self, version: int) -> ChangeLog | None:
        """The log's length, the `id` of its change at `version - 1` and the changes from
        `version` on, at most `CHANGE_READ_BATCH` (read on from `version + len(changes)`): a log
        shorter than `version`, or whose change there is another than the reader applied, was
        lost (Redis restarted empty, or lost its last writes)."""
        key = self._key("catalog", "changes")
        previous, last = max(version - 1, 0), version + CHANGE_READ_BATCH - 1

        def action(r: Any) -> tuple[int, Any, list[bytes]]:
            pipe = r.pipeline().llen(key).lindex(key, previous).lrange(key, version, last)
            return tuple(pipe.execute())

        found = self._call("changes_since", action)
        if found is None:
            return None
        length, previous, entries = found
        return ChangeLog(
            length=int(length),
            previous_id=_change_id(previous) if version > 0 else None,
            changes=[json.loads(entry) for entry in entries],
        )


@dataclass(frozen=True)
class ChangeLog:
    """What `RedisState.changes_since(version)` read from the catalog change log."""

    length: int
    previous_id: str | None  # of the change at version - 1; None when there is none or no id
    changes: list[dict[str, Any]]  # from `version` on, at most CHANGE_READ_BATCH


def _change_id(entry: bytes | str | None) -> str | None:
    """A logged catalog change's `id` (changes published before ids were given have none)."""
    if entry is None:
        return None
    found = json.loads(entry).get("id")
    return str(found) if found is not None else None


def wrong_log_type_reason(prefix: str, found: str) -> str:
    """What another type at the shared event log key means, and the fix."""
    return (
        f"redis holds a {found} at {prefix}{SHARED_EVENTS_KEY}, where the shared event log (a "
        "stream) belongs: no event can be stored, posted events wait in the spool and the other "
        "workers do not count them; delete or rename that key and they are stored, in order"
    )


def _logged_event(entry_id: Any, fields: Mapping[Any, Any]) -> Event | None:
    """The event of a shared log entry; None (logged) for one no worker of this app wrote."""
    try:
        return Event.from_dict(json.loads(fields.get(b"event") or fields["event"]))
    except (KeyError, TypeError, ValueError) as exc:
        logger.error(
            "skipping a malformed shared event log entry %r: %r (%s)",
            entry_id,
            fields,
            exc,
        )
        return None
