"""Conversation state per session id, kept in Redis with a sliding TTL."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

SESSION_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Turn:
    """One message in a conversation; bot turns carry the outcome and the FAQ they answered."""

    turn_id: str
    role: str  # "user" | "bot"
    text: str
    ts: float
    faq_id: str | None = None
    confidence: float | None = None
    outcome: str | None = None


@dataclass
class Session:
    """A conversation: its turns (oldest first, capped), consecutive failures, handoff flag."""

    id: str
    created: float
    turns: list[Turn] = field(default_factory=list)
    failures: int = 0
    handed_off: bool = False

    def last_user_text(self) -> str | None:
        """The customer's previous message (the context for a short follow-up)."""
        return next((t.text for t in reversed(self.turns) if t.role == "user"), None)

    def last_answered_faq(self) -> str | None:
        """The FAQ id of the latest bot turn when it was an answer."""
        last = next((t for t in reversed(self.turns) if t.role == "bot"), None)
        return last.faq_id if last is not None and last.outcome == "answer" else None

    def bot_turn(self, turn_id: str) -> Turn | None:
        return next((t for t in self.turns if t.turn_id == turn_id and t.role == "bot"), None)

    def transcript(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.turns]


def new_id() -> str:
    """A random 128-bit id as 32 hex characters (session and turn ids)."""
    return secrets.token_hex(16)


def valid_session_id(value: str) -> bool:
    return bool(SESSION_ID_PATTERN.match(value))


class SessionStore:
    """Sessions as JSON values under `<prefix>session:<id>`; every save renews the TTL.

    Two requests of one session racing each other: the last save wins (a chat widget sends one
    message at a time, so this is accepted rather than locked).
    """

    def __init__(self, client: Any, *, prefix: str, ttl_s: int, max_turns: int = 20) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    def key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def create(self) -> Session:
        session = Session(id=new_id(), created=time.time())
        self.save(session)
        return session

    def get(self, session_id: str) -> Session | None:
        """The stored session, or None when unknown or expired."""
        if not valid_session_id(session_id):
            return None
        raw = self.client.get(self.key(session_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return Session(
            id=data["id"],
            created=data["created"],
            turns=[Turn(**t) for t in data.get("turns", [])],
            failures=int(data.get("failures", 0)),
            handed_off=bool(data.get("handed_off", False)),
        )

    def save(self, session: Session) -> None:
        session.turns = session.turns[-self.max_turns :]
        payload = json.dumps(asdict(session))
        self.client.set(self.key(session.id), payload, ex=self.ttl_s)
