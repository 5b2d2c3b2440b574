"""User histories: the seed log every worker loads, plus events posted through the API.

Posted events live in Redis so every worker sees them; each worker also keeps its own copy,
used only while Redis is unavailable (then a user's recent events are those this worker saw).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.redis_state import RedisState


class UserHistories:
    def __init__(self, seed: Sequence[Event], redis: RedisState, *, limit: int = 200) -> None:
        self.limit = limit
        self.redis = redis
        self._seed = {user: events[-limit:] for user, events in group_by_user(seed).items()}
        self._local: dict[str, deque[Event]] = {}
        self._lock = threading.Lock()

    def record(self, events: Sequence[Event]) -> bool:
        """Store new events; False, keeping none, when Redis is configured but did not take them.

        Refusing beats keeping them in this worker only: the client is told to send them again,
        instead of being told they were stored and then losing them.
        """
        if self.redis.url is not None and not self.redis.append_events(events):
            return False
        with self._lock:
            for event in events:
                self._local.setdefault(event.user_id, deque(maxlen=self.limit)).append(event)
        return True

    def get(self, user_id: str) -> list[Event]:
        """Oldest first, at most `limit` events."""
        posted = self.redis.history(user_id)
        if posted is None:
            with self._lock:
                posted = list(self._local.get(user_id, ()))
        events = [*self._seed.get(user_id, ()), *posted]
        return events[-self.limit :]

    @property
    def known_users(self) -> list[str]:
        with self._lock:
            return sorted(set(self._seed) | set(self._local))
