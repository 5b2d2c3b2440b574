"""Conversations: turns, sessions, their ids, and where they are kept (a sliding TTL).

`SessionStore` is what the chat needs; `MemorySessionStore` keeps sessions in this process
(the app uses it when Redis is not configured), `redis_sessions.RedisSessionStore` in Redis.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from threefold.core.privacy import mask_pii

SESSION_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Turn:
    """One message in a conversation; bot turns carry the outcome and the FAQ they answered."""

    turn_id: str
    role: str  # "user" | "bot" | "agent"
    text: str
    ts: float
    faq_id: str | None = None
    confidence: float | None = None
    outcome: str | None = None
    agent: str | None = None  # the display name on agent turns
    suggestions: list[dict[str, str]] = field(default_factory=list)  # offered with a bot turn
    rating: str | None = None  # the customer's vote on a bot answer ("up" or "down")
    bot_version: str | None = None  # the bot version that gave a bot turn


@dataclass
class Session:
    """A conversation: its turns (oldest first, capped), consecutive failures, handoff flag."""

    id: str
    created: float
    turns: list[Turn] = field(default_factory=list)
    failures: int = 0
    handed_off: bool = False

    def last_user_text(self) -> str | None:
        """The customer's latest message (the question an agent's reply answers)."""
        return next((t.text for t in reversed(self.turns) if t.role == "user"), None)

    def follow_up_context(self) -> tuple[str | None, str | None]:
        """The context of a follow-up: the customer's latest message that was not small talk
        ("and to Mexico?" after "How long to Canada?", "thanks!") and the FAQ that answered it
        (None when it was not answered)."""
        for position in range(len(self.turns) - 1, -1, -1):
            turn = self.turns[position]
            if turn.role != "user":
                continue
            following = self.turns[position + 1 : position + 2]
            reply = following[0] if following and following[0].role == "bot" else None
            if reply is not None and reply.outcome == "small_talk":
                continue
            answered = reply.faq_id if reply is not None and reply.outcome == "answer" else None
            return turn.text, answered
        return None, None

    def bot_turn(self, turn_id: str) -> Turn | None:
        return next((t for t in self.turns if t.turn_id == turn_id and t.role == "bot"), None)

    def transcript(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.turns]


def new_id() -> str:
    """A random 128-bit id as 32 hex characters (session and turn ids)."""
    return secrets.token_hex(16)


def valid_session_id(value: str) -> bool:
    return bool(SESSION_ID_PATTERN.match(value))


def new_session() -> Session:
    """A new empty session with a fresh id."""
    return Session(id=new_id(), created=time.time())


def session_to_dict(session: Session) -> dict[str, Any]:
    """The session as stored: JSON-able, with personal data in the turns masked."""
    data = asdict(session)
    for turn in data["turns"]:
        turn["text"] = mask_pii(turn["text"])
    return data


def session_from_dict(data: dict[str, Any]) -> Session:
    """The session `asdict(session)` was made from."""
    return Session(
        id=data["id"],
        created=data["created"],
        turns=[Turn(**t) for t in data.get("turns", [])],
        failures=int(data.get("failures", 0)),
        handed_off=bool(data.get("handed_off", False)),
    )


SessionChange = Callable[[Session], object]


class SessionStore(Protocol):
    """Where sessions live between requests; every save renews the session's TTL."""

    def create(self) -> Session: ...

    def get(self, session_id: str) -> Session | None: ...

    def save(self, session: Session) -> None:
        """Write the whole session: for a new one (a stored one changes through `update`, or a
        change made meanwhile by another request is lost)."""
        ...

    def update(self, session_id: str, change: SessionChange) -> Session | None:
        """Apply `change` to the stored session atomically (no concurrent write is lost) and
        save it; None when the session is unknown or expired. `change` may run more than once
        (on a fresh copy each time); an exception it raises leaves the session as it was."""
        ...


class MemorySessionStore:
    """Sessions in this process only (lost on restart, not shared between workers)."""

    def __init__(self, *, ttl_s: int, max_turns: int = 20) -> None:
        self.ttl_s = ttl_s
        self.max_turns = max_turns
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[float, Session]] = {}

    def create(self) -> Session:
        session = new_session()
        self.save(session)
        return session

    def get(self, session_id: str) -> Session | None:
        """A copy of the stored session, or None when unknown or expired."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (expires, _) in self._sessions.items() if expires <= now]:
                del self._sessions[key]
            stored = self._sessions.get(session_id)
        return session_from_dict(asdict(stored[1])) if stored else None

    def save(self, session: Session) -> None:
        with self._lock:
            self._put(session)

    def update(self, session_id: str, change: SessionChange) -> Session | None:
        with self._lock:
            stored = self._sessions.get(session_id)
            if stored is None or stored[0] <= time.monotonic():
                return None
            session = session_from_dict(asdict(stored[1]))
            change(session)
            self._put(session)
        return session

    def _put(self, session: Session) -> None:
        """Keep a copy of the last `max_turns` turns with a fresh TTL (the lock held)."""
        session.turns = session.turns[-self.max_turns :]
        self._sessions[session.id] = (
            time.monotonic() + self.ttl_s,
            session_from_dict(session_to_dict(session)),
        )
