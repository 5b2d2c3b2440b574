"""The event log every worker counts, so popularity, trending and co-occurrence (and so the lists)
agree across workers and replicas.

Each event a worker stores in Redis also goes onto a stream shared by all of them, in the same
transaction as the user's history (`RedisState.append_events`). Every worker reads that stream
from where it stopped: all of it at start (a restarted worker or a new replica counts what the
others count), then at most every `interval_seconds` from requests, and at once after its own
posts. It hands what it read to every recommender it serves; their next statistics rebuild
counts it. Two workers that have read the same log rank the same lists.

While Redis is down a worker ranks with the statistics it has (logged once, gauge
`recs_shared_events_available` 0). The events posted to it then are counted here at once and
wait in its spool; when they reach the log, this worker skips them there (counted once), and
every other worker counts them when it reads them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

from threefold.apps.recs.events import Event
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import RedisState

logger = logging.getLogger(__name__)
START = "0-0"  # the stream position before its first entry


class SharedEvents:
    """Feeds `recommenders` the events every worker posted, read from the shared log in Redis.

    `position` is the last stream entry read. The first recommender's event log is the one a
    recommender that `join`s later catches up from.
    """

    def __init__(
        self,
        redis: RedisState,
        metrics: RecsMetrics,
        recommenders: Sequence[Recommender] = (),
        *,
        interval_seconds: float = 2.0,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.recommenders = list(recommenders)
        self.interval_seconds = interval_seconds
        self.position = START
        self.last_read = float("-inf")
        self._counted_here: Counter[Event] = Counter()  # counted before the log brought them
        self._reachable: bool | None = None
        self._lock = threading.Lock()
        metrics.shared_events_up.set(0)

    def read_new(self) -> list[Event]:
        """The log's events after `position` (at start: all of them), which moves past them;
        those counted here already are left out. [] while Redis is unavailable."""
        with self._lock:
            return self._read()

    def sync(self, *, force: bool = False) -> None:
        """Hand the recommenders the events posted since the last read (at most every
        `interval_seconds` unless `force`; a request does not wait for another one's read)."""
        if self.redis.url is None:
            return
        if not force and time.monotonic() - self.last_read < self.interval_seconds:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            events = self._read()
            if events:
                for recommender in self.recommenders:
                    recommender.add_events(events)
        finally:
            self._lock.release()

    def counted(self, events: Sequence[Event], *, shared: bool) -> None:
        """Count events this worker accepted: `shared` (Redis took them) they come back with
        everyone's from the log now; else (spooled, or no Redis) they are counted here at once
        and skipped when the log brings them."""
        if shared:
            self.sync(force=True)
            return
        with self._lock:
            if self.redis.url is not None:
                self._counted_here.update(events)
            for recommender in self.recommenders:
                recommender.add_events(events)

    def join(self, recommender: Recommender) -> None:
        """Feed `recommender` from now on; it was built on a copy of the first recommender's
        event log and gets the events added there since."""
        with self._lock:
            missed = self.recommenders[0].events()[len(recommender.events()) :]
            if missed:
                recommender.add_events(missed)
            self.recommenders = [*self.recommenders, recommender]

    def _read(self) -> list[Event]:
        """Read the log up to its end (call with the lock held)."""
        fresh: list[Event] = []
        while True:
            found = self.redis.shared_events_after(self.position)
            if found is None:
                self._reachable_now(False)
                break
            position, events = found
            fresh.extend(self._not_counted_here(events))
            if position == self.position:
                self._reachable_now(True)
                break
            self.position = position
        self.last_read = time.monotonic()
        self.metrics.shared_events_read.inc(len(fresh))
        return fresh

    def _not_counted_here(self, events: Sequence[Event]) -> list[Event]:
        if not self._counted_here:
            return list(events)
        fresh = []
        for event in events:
            if self._counted_here[event] > 0:
                self._counted_here[event] -= 1
                if not self._counted_here[event]:
                    del self._counted_here[event]
            else:
                fresh.append(event)
        return fresh

    def _reachable_now(self, reachable: bool) -> None:
        """Gauge and log the state of the shared log (one line per change)."""
        self.metrics.shared_events_up.set(int(reachable))
        before, self._reachable = self._reachable, reachable
        if reachable == before:
            return
        counted = len(self.recommenders[0].events()) if self.recommenders else 0
        if not reachable:
            logger.warning(
                "the shared event log in Redis is unreachable; ranking with this worker's last "
                "statistics (%d events) plus the events posted to it, until Redis answers",
                counted,
                extra={"fields": {"event": "shared_events_unreachable", "events": counted}},
            )
        elif before is False:
            logger.info(
                "the shared event log in Redis is reachable again; counting from it (%d events)",
                counted,
                extra={"fields": {"event": "shared_events_resumed", "events": counted}},
            )
