"""User histories: the seed log every worker loads, plus events posted through the API.

Posted events live in Redis so every worker sees them; each worker also keeps its own copy of
the newest `local_events` it accepted (`RecentEvents`), used only while Redis is unavailable
or not configured (then a user's recent events are those of that copy): its memory stays
bounded however many users post, the oldest events going first.
Events Redis could not take go to the spool on disk and are replayed once Redis answers again,
before any newer event, so none is lost and their order is kept. Each event gets its id when it
is accepted (the client's `event_id`, else an `accept_id` that is spooled with it), and Redis
stores an id once (`RedisState.append_events`): a write that timed out but that Redis carried
out, then replayed from the spool, is not stored twice. A spooled event Redis refuses while it
answers (an error reply on its data, e.g. a key of another type under the prefix) is set aside
in the spool's `.rejected` file, logged and counted (`recs_spool_records_rejected_total`), and
the others are stored (`on_refused` sees those set aside). A key of another type at the shared
event log (`<prefix>events-log`: every append fails, whatever the event) is no event's fault:
the replay then keeps every event spooled, without searching for refused ones, and stores them
all once the key is deleted or renamed; `RedisState.shared_log_type_now` gauges and logs that
finding once for the worker; `/healthz` asks `shared_log_problem` for it.
`on_stored` sees events once they are stored (impressions attribute clicks to the list that
showed the item).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import (
    Event,
    group_by_user,
    sort_events,
    with_accept_ids,
    with_spool_ids,
)
from threefold.apps.recs.redis_state import RedisState, wrong_log_type_reason
from threefold.streaming.record_spool import RecordsRefused

logger = logging.getLogger(__name__)
# RedisState logs the error reply (`redis append_events failed`) but does not pass it on
REFUSED_REASON = "redis answers but refused the event (see the append_events warning logged)"
LOCAL_EVENTS = 100_000  # the most posted events a worker keeps a copy of (~120 MB at worst)


class RecentEvents:
    """The newest `max_events` events added, by user: each user's last `per_user` of them and
    the items bought in any of them (also one older than the user's last `per_user`). The
    oldest event goes first; a user none of whose events is left is forgotten."""

    def __init__(self, max_events: int, per_user: int) -> None:
        self.max_events = max_events
        self.per_user = per_user
        self._order: deque[Event] = deque()  # every event kept, oldest first
        self._histories: dict[str, deque[Event]] = {}
        self._bought: dict[str, Counter[str]] = {}  # user -> item -> purchases kept
        self._lock = threading.Lock()

    def add(self, events: Sequence[Event]) -> None:
        with self._lock:
            for event in events:
                self._order.append(event)
                user = event.user_id
                self._histories.setdefault(user, deque(maxlen=self.per_user)).append(event)
                if event.event == "purchase":
                    self._bought.setdefault(user, Counter())[event.item_id] += 1
                while len(self._order) > self.max_events:
                    self._forget(self._order.popleft())

    def _forget(self, event: Event) -> None:
        """Drop the oldest event kept (call with the lock held)."""
        user = event.user_id
        history = self._histories.get(user)
        if history and history[0] is event:  # else it already left the user's last per_user
            history.popleft()
        bought = self._bought.get(user)
        if event.event == "purchase" and bought:
            bought[event.item_id] -= 1
            if bought[event.item_id] <= 0:
                del bought[event.item_id]
            if not bought:
                del self._bought[user]
        if history is not None and not history:  # its newest event: nothing of it is left
            del self._histories[user]

    def history(self, user_id: str) -> list[Event]:
        """The user's events kept, in the order added (at most `per_user`)."""
        with self._lock:
            return list(self._histories.get(user_id, ()))

    def purchased(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._bought.get(user_id, ()))

    def __len__(self) -> int:
        """How many events are kept (at most `max_events`)."""
        return len(self._order)

    @property
    def user_count(self) -> int:
        """How many users have an event kept (at most `max_events`)."""
        return len(self._histories)


class UserHistories:
    """Each user's events: the seed log's, then the posted ones (Redis, or `local` while it is
    unavailable or not configured)."""

    def __init__(
        self,
        seed: Sequence[Event],
        redis: RedisState,
        *,
        limit: int = 200,
        local_events: int = LOCAL_EVENTS,
        spool: EventSpool | None = None,
        on_stored: Callable[[Sequence[Event]], None] | None = None,
        on_refused: Callable[[Sequence[Event]], None] | None = None,
    ) -> None:
        self.limit = limit
        self.redis = redis
        self.spool = spool
        self.on_stored = on_stored or (lambda events: None)
        self.on_refused = on_refused or (lambda events: None)
        by_user = group_by_user(seed)
        self._seed = {user: events[-limit:] for user, events in by_user.items()}
        # purchases outlive the capped history: a bought item stays excluded however many
        # events follow it
        self._seed_purchases = {user: _purchases(events) for user, events in by_user.items()}
        self.local = RecentEvents(local_events, limit)

    def record(self, events: Sequence[Event]) -> bool:
        """Store new events; returns whether Redis took them (if not, they are spooled)."""
        events = with_accept_ids(events)
        self.local.add(events)
        if self.spool is None:  # no Redis configured: this worker's copy is the store
            stored = self.redis.append_events(events)
            self.on_stored(events)
            return stored
        if self.replay_spool() and self._push(events):
            return True
        self.spool.append(events)
        return False

    def all_shared(self) -> bool:
        """Whether every event this worker accepted is in Redis now: Redis is configured and
        answers, and no spooled event waits (a post of only duplicates says so)."""
        return self.spool is not None and self.replay_spool() and self.redis.available

    def _push(self, events: Sequence[Event]) -> bool:
        """Append to Redis; once it took them, `on_stored` (e.g. click attribution) sees them."""
        if not self.redis.append_events(events):
            return False
        self.on_stored(events)
        return True

    def replay_spool(self) -> bool:
        """Push spooled events to Redis; True when none is left waiting."""
        if self.spool is None or not self.spool.pending():
            return True
        self.spool.replay(
            self._push_spooled, prepare=with_spool_ids, on_refused=self._count_refused
        )
        return not self.spool.pending()

    def _push_spooled(self, events: list[Event]) -> bool:
        """`_push`; `RecordsRefused` when Redis did not take them but still answers and takes
        other writes: the failure was an error reply on their data. False (all wait) when Redis
        is unavailable, refuses every write, or holds another type at the shared log key."""
        if self._push(events):
            return True
        if not self.redis.available:
            return False
        if self.redis.wrong_shared_log_type() is not None:  # every append fails: none set aside
            return False
        if self.redis.takes_writes():
            raise RecordsRefused(REFUSED_REASON)
        return False

    def shared_log_problem(self) -> str | None:
        """Why no event can reach the shared event log although Redis answers (another type
        at its key), with the fix; None when there is none or Redis does not answer (`/healthz`
        asks it; gauged and logged once for the worker by `RedisState`)."""
        wrong = self.redis.wrong_shared_log_type()
        return None if wrong is None else wrong_log_type_reason(self.redis.prefix, wrong)

    def _count_refused(self, refused: Sequence[tuple[Event, str]]) -> None:
        self.redis.metrics.spool_rejected.labels("event").inc(len(refused))
        self.on_refused([event for event, _ in refused])

    def get(self, user_id: str) -> list[Event]:
        """Oldest first by timestamp (events may arrive out of order), at most `limit` events."""
        self.replay_spool()
        posted = self.redis.history(user_id)
        if posted is None:
            posted = self.local.history(user_id)
        events = sort_events([*self._seed.get(user_id, ()), *posted])
        return events[-self.limit :]

    def purchased(self, user_id: str) -> set[str]:
        """Every item the user bought: the seed log's, the shared ones (Redis, or this worker's
        `local` copy while it is unavailable), also those older than the last `limit` events."""
        shared = self.redis.purchased(user_id)
        if shared is None:
            shared = self.local.purchased(user_id)
        return self._seed_purchases.get(user_id, set()) | shared

    @property
    def known_users(self) -> list[str]:
        """The seed log's users, sorted: the same on every worker; never a posted user id."""
        return sorted(self._seed)


def _purchases(events: Sequence[Event]) -> set[str]:
    return {event.item_id for event in events if event.event == "purchase"}
