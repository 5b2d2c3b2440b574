"""Sessions in Redis: one JSON value per session under `<prefix>session:<id>`, with a TTL."""

from __future__ import annotations

import json
from typing import Any

from threefold.apps.qa.redis_watch import Queue, update_watched
from threefold.apps.qa.sessions import (
    Session,
    SessionChange,
    new_session,
    session_from_dict,
    session_to_dict,
    valid_session_id,
)


class RedisSessionStore:
    """A `SessionStore` in Redis, shared by every worker; every write renews the TTL.

    Every change of a stored session goes through `update` (WATCH/MULTI, retried when another
    request changed the session in between): requests of one session that overlap (messages sent
    at once, a vote while an agent replies) never overwrite each other's turns. `save` writes a
    whole session: for a new one (`create`), where nothing can be lost.
    """

    def __init__(self, client: Any, *, prefix: str, ttl_s: int, max_turns: int = 20) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    def key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def create(self) -> Session:
        session = new_session()
        self.save(session)
        return session

    def get(self, session_id: str) -> Session | None:
        """The stored session, or None when unknown or expired."""
        if not valid_session_id(session_id):
            return None
        raw = self.client.get(self.key(session_id))
        return None if raw is None else session_from_dict(json.loads(raw))

    def save(self, session: Session) -> None:
        self._write(self.client, session)

    def _write(self, client: Any, session: Session) -> None:
        """Keep the last `max_turns` turns and store them with a fresh TTL (`client`: Redis, or
        a MULTI pipeline)."""
        session.turns = session.turns[-self.max_turns :]
        client.set(self.key(session.id), json.dumps(session_to_dict(session)), ex=self.ttl_s)

    def update(self, session_id: str, change: SessionChange) -> Session | None:
        if not valid_session_id(session_id):
            return None
        key = self.key(session_id)

        def changed(raw: bytes | None) -> tuple[Session | None, Queue | None]:
            if raw is None:
                return None, None
            session = session_from_dict(json.loads(raw))
            change(session)
            return session, lambda pipe: self._write(pipe, session)

        return update_watched(self.client, key, changed)
