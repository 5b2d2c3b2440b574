"""The event log every worker counts, so popularity, trending and co-occurrence (and so the lists)
agree across workers and replicas.

Each event a worker stores in Redis also goes onto a stream shared by all of them, in the same
transaction as the user's history (`RedisState.append_events`; XADD MAXLEN ~ keeps at least the
newest `shared_events_max`). Every worker reads that stream from where it stopped: all of it at
start (a restarted worker or a new replica counts what the others count), then at most every
`interval_seconds` from requests, and at once after its own posts. Each worker counts the seed log
plus the newest `shared_events_max` entries of the stream, by stream order (the same for every
reader, whenever it started), and forgets older ones: two workers that have read the stream to
the same entry count the same events and rank the same lists, and a worker's memory holds at
most the seed log plus `shared_events_max` posted events (one copy, shared by the recommenders
of all its A/B variants).

While Redis is down a worker ranks with the statistics it has (logged once, gauge
`recs_shared_events_available` 0); so it does while Redis holds another type at the stream's
key (logged once for the worker by `RedisState.shared_log_type_now`, with the fix, in the words
of `/healthz`; not again here). The events posted to it then
are counted here at once (they take a place in the window, after the stream's entries) and wait
in its spool; when the stream brings them back they move to their place in stream order, so once
the spool has reached the stream this worker counts exactly what the others count. A spooled
event Redis refuses (set aside) is no longer counted here either (`uncount`). Without Redis the
events posted to this worker are its window (the newest `shared_events_max`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import chain, repeat

from threefold.apps.recs.events import Event
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import RedisState

logger = logging.getLogger(__name__)
START = "0-0"  # the stream position before its first entry


class SharedEvents:
    """Feeds `recommenders` the seed log plus the newest `redis.shared_events_max` events every
    worker posted, read from the shared stream in Redis (`log`).

    `position` is the last stream entry read; `generation` changes with each change of `log()`.
    """

    def __init__(
        self,
        redis: RedisState,
        metrics: RecsMetrics,
        recommenders: Sequence[Recommender] = (),
        *,
        seed: Sequence[Event] = (),
        interval_seconds: float = 2.0,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.recommenders = list(recommenders)
        self.interval_seconds = interval_seconds
        self.limit = redis.shared_events_max
        self.position = START
        self.last_read = float("-inf")
        self.generation = 0
        self._seed: tuple[Event, ...] = tuple(seed)
        self._window: deque[Event] = deque()  # the newest stream entries read, stream order
        # counted here before the stream brought them (spooled): oldest first, with multiplicity
        self._local: dict[Event, int] = {}
        self._local_count = 0
        self._snapshot: tuple[Event, ...] | None = None
        self._state: tuple[bool, str | None] | None = None  # (read, type at the key if wrong)
        self._lock = threading.Lock()  # one reader of the stream at a time
        self._log_lock = threading.Lock()  # the window; never held while calling a recommender
        metrics.shared_events_up.set(0)

    # ------------------------------------------------------------------ what is counted
    @property
    def seed(self) -> tuple[Event, ...]:
        return self._seed

    @seed.setter
    def seed(self, events: Sequence[Event]) -> None:
        """The seed log, counted before the posted events (set once, before `join`)."""
        with self._log_lock:
            self._seed = tuple(events)
            self._snapshot = None
            self.generation += 1

    def log(self) -> tuple[Event, ...]:
        """What every recommender of this worker counts: the seed log, the newest
        `shared_events_max` stream entries read (stream order), then this worker's events the
        stream has not brought back yet. One snapshot per change, shared by all recommenders."""
        with self._log_lock:
            if self._snapshot is None:
                self._snapshot = (*self._seed, *self._posted())
            return self._snapshot

    def posted(self) -> tuple[Event, ...]:
        """`log()` without the seed log."""
        with self._log_lock:
            return self._posted()

    def _posted(self) -> tuple[Event, ...]:
        local = chain.from_iterable(repeat(event, n) for event, n in self._local.items())
        return (*self._window, *local)

    def size(self) -> int:
        """len(log()), without building it."""
        with self._log_lock:
            return len(self._seed) + len(self._window) + self._local_count

    # ------------------------------------------------------------------ reading
    def read_new(self) -> list[Event]:
        """Read the stream after `position` (at start: all of it) into the window; returns the
        events read that were not counted here already. Nothing while Redis is unavailable."""
        with self._lock:
            return self._read()

    def sync(self, *, force: bool = False) -> None:
        """Read the events posted since the last read and have the recommenders recount (at
        most every `interval_seconds` unless `force`; a request does not wait for another
        one's read)."""
        if self.redis.url is None:
            return
        if not force and time.monotonic() - self.last_read < self.interval_seconds:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            before = self.generation
            self._read()
            if self.generation != before:
                self._notify()
        finally:
            self._lock.release()

    def counted(self, events: Sequence[Event], *, shared: bool) -> None:
        """Count events this worker accepted: `shared` (Redis took them) they come back with
        everyone's from the stream now; else (spooled, or no Redis) they are counted here at once
        and take their place in stream order when the stream brings them."""
        if shared:
            self.sync(force=True)
            return
        if not events:
            return
        with self._lock:
            with self._log_lock:
                if self.redis.url is None:  # no stream: this worker's posts are the window
                    self._window.extend(events)
                else:
                    for event in events:
                        self._local[event] = self._local.get(event, 0) + 1
                    self._local_count += len(events)
                self._changed()
            self._notify()

    def uncount(self, events: Iterable[Event]) -> None:
        """Stop counting events counted here that will never reach the stream (Redis refused
        them: set aside from the spool); the others never counted them."""
        with self._lock:
            with self._log_lock:
                dropped = sum(self._forget_local(event) for event in events)
                if dropped:
                    self._changed()
            if dropped:
                self._notify()

    def join(self, recommender: Recommender, *, built_from: int | None = None) -> None:
        """Feed `recommender` from now on (it counts `log()`); `built_from`: the `generation` of
        the log it was built on (it recounts at its next refresh unless that is the current
        one)."""
        with self._lock:
            recommender.count_events_from(self.log, changed=built_from != self.generation)
            if recommender not in self.recommenders:
                self.recommenders = [*self.recommenders, recommender]

    def _notify(self) -> None:
        """Tell the recommenders the log changed (call with `_lock`, not `_log_lock`)."""
        for recommender in self.recommenders:
            recommender.events_changed()

    def _read(self) -> list[Event]:
        """Read the stream up to its end into the window (call with `_lock` held)."""
        fresh: list[Event] = []
        while True:
            found = self.redis.shared_events_after(self.position)
            if found is None:
                self._shared_log_now(False, self.redis.wrong_shared_log_type())
                break
            position, events = found
            if events:
                with self._log_lock:
                    fresh.extend(self._take(events))
            if position == self.position:
                self._shared_log_now(True)
                break
            self.position = position
        self.last_read = time.monotonic()
        self.metrics.shared_events_read.inc(len(fresh))
        return fresh

    def _take(self, events: Sequence[Event]) -> list[Event]:
        """Add stream entries to the window (call with `_log_lock`); those counted here already
        move to their stream place. Returns the others."""
        fresh = []
        for event in events:
            if not self._forget_local(event):
                fresh.append(event)
            self._window.append(event)
        self._changed()
        return fresh

    def _forget_local(self, event: Event) -> bool:
        """Whether `event` was counted here and waited for the stream (now forgotten)."""
        waiting = self._local.get(event, 0)
        if not waiting:
            return False
        if waiting == 1:
            del self._local[event]
        else:
            self._local[event] = waiting - 1
        self._local_count -= 1
        return True

    def _changed(self) -> None:
        """Keep the newest `limit` posted events, oldest stream entries first to go (call with
        `_log_lock`)."""
        while len(self._window) + self._local_count > self.limit:
            if self._window:
                self._window.popleft()
            else:  # more of its own than the limit: its oldest go (counted once read back)
                self._forget_local(next(iter(self._local)))
        self._snapshot = None
        self.generation += 1
        self.metrics.shared_events_counted.set(len(self._window) + self._local_count)

    def _shared_log_now(self, read: bool, wrong_type: str | None = None) -> None:
        """Gauge and log the state of the shared log (one line per change): read, or
        unreachable. Another type at its key (`wrong_type`) has its own line, logged once for
        the worker by `RedisState`; reading again after it is not news here either."""
        self.metrics.shared_events_up.set(int(read))
        before, self._state = self._state, (read, wrong_type)
        if self._state == before:
            return
        counted = self.size()
        if not read and wrong_type is None:
            logger.warning(
                "the shared event log in Redis is unreachable; ranking with this worker's last "
                "statistics (%d events) plus the events posted to it, until Redis answers",
                counted,
                extra={"fields": {"event": "shared_events_unreachable", "events": counted}},
            )
        elif read and before is not None and before[1] is None:
            logger.info(
                "the shared event log in Redis is readable again; counting from it (%d events)",
                counted,
                extra={"fields": {"event": "shared_events_resumed", "events": counted}},
            )
