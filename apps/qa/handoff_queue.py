"""Conversations handed to people: their states and the rules for claiming, replying and ending.

A conversation is `waiting` (in the queue) until an agent claims it, then `claimed` (the bot is
silent), then `released` (handed back to the bot) or `closed`. A new handoff of the same session
opens a fresh conversation. `HandoffStore` is where conversations live; `MemoryHandoffStore`
keeps them in this process, `redis_handoff.RedisHandoffStore` in Redis.

Opening can be capped per client address (`Conversation.client`): past `max_waiting`
conversations of one address waiting at once, `open` raises `TooManyWaiting`, so one client
cannot flood the agents' queue. A waiting conversation counts only while its customer may still
be there: for `counts_for_s` after its handoff (the customer's session lifetime, which only their
messages refresh, not the widget's live connection), and until claimed or ended. It stays in
the agents' queue after that; only the cap's count leaves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from threefold.apps.qa.config import QAConfig
from threefold.core.privacy import mask_pii

STATUSES = ("claimed", "closed", "released", "waiting")
ACTIVE = ("waiting", "claimed")
STAGES = {"waiting": 0, "claimed": 1}  # then released or closed: ended
# how long after its handoff a waiting conversation counts against its address's cap, unless
# told: the default session lifetime (the customer's messages, not the widget's polls, renew it)
COUNTS_FOR_S = QAConfig.session_ttl_s
MAX_LEFT_MESSAGES = 5  # the newest messages for the team a conversation keeps


class HandoffError(Exception):
    """A transition the conversation's state does not allow."""


class UnknownConversation(HandoffError):
    """No conversation was handed off for this session id."""


class HeldByAnother(HandoffError):
    """Another agent has claimed the conversation."""

    def __init__(self, agent: str) -> None:
        super().__init__(agent)
        self.agent = agent


class NotClaimed(HandoffError):
    """The conversation is waiting: claim it before replying or releasing it."""


class TooManyWaiting(HandoffError):
    """The client address already has `limit` conversations waiting for a person."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(f"{waiting} conversations of this client wait already (limit {limit})")
        self.waiting = waiting
        self.limit = limit


class ConversationEnded(HandoffError):
    """The conversation was closed or handed back to the bot."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Conversation:
    """One handoff of a session: who holds it, since when, and what the bot would have answered."""

    session_id: str
    status: str
    waiting_since: float
    reason: str = ""
    page_url: str | None = None
    agent: str | None = None
    claimed_at: float | None = None
    first_reply_at: float | None = None
    ended_at: float | None = None
    candidates: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # {"text": masked with `core.privacy.mask_pii`, "ts": when left (None: not recorded)}, oldest
    # first, the newest MAX_LEFT_MESSAGES
    left_messages: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    client: str | None = None  # the address that asked (`core.web.client_key`); not for agents

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def left_message(self) -> str | None:
        """The newest message left for the team."""
        return self.left_messages[-1]["text"] if self.left_messages else None

    @property
    def progress(self) -> tuple[float, int]:
        """How far the session's handoffs had gone when this was read: a later handoff is
        further on than an earlier one, and within one, waiting < claimed < released or closed.
        Of two reads, the one less far on is out of date."""
        return self.waiting_since, STAGES.get(self.status, len(STAGES))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = list(self.candidates)
        data["left_messages"] = list(self.left_messages)
        data["left_message"] = self.left_message  # what workers of the previous version read
        return data


def conversation_from_dict(data: dict[str, Any]) -> Conversation:
    """A stored conversation; fields this version does not know (written by a newer one during
    a rolling update, or before a rollback) are ignored rather than fail every read."""
    known = {f.name for f in fields(Conversation)}
    kept = {key: value for key, value in data.items() if key in known}
    return Conversation(
        **{
            **kept,
            "candidates": tuple(data.get("candidates", ())),
            "left_messages": _left_messages(data),
        }
    )


def _left_messages(data: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The stored messages for the team. A record of a version that kept only the newest, as
    `left_message` and unmasked, reads as that one message (time not recorded), masked."""
    if "left_messages" in data:
        return tuple(data["left_messages"])
    old = data.get("left_message")
    return () if old is None else ({"text": mask_pii(old), "ts": None},)


def claim(conversation: Conversation, agent: str, now: float) -> Conversation:
    """`agent` takes the conversation; claiming one you already hold is a no-op."""
    _require_active(conversation)
    if conversation.status == "claimed":
        if conversation.agent != agent:
            raise HeldByAnother(conversation.agent or "")
        return conversation
    return replace(conversation, status="claimed", agent=agent, claimed_at=now)


def record_reply(conversation: Conversation, agent: str, now: float) -> Conversation:
    """The holder replied (the first reply is kept for the time-to-first-reply metric)."""
    require_holder(conversation, agent)
    if conversation.first_reply_at is not None:
        return conversation
    return replace(conversation, first_reply_at=now)


def end(conversation: Conversation, agent: str, status: str, now: float) -> Conversation:
    """The holder hands the conversation back to the bot (`released`) or closes it."""
    if status not in ("closed", "released"):
        raise ValueError(f"a conversation ends as 'closed' or 'released', found {status!r}")
    require_holder(conversation, agent)
    return replace(conversation, status=status, ended_at=now)


def leave_message(conversation: Conversation, text: str, now: float) -> Conversation:
    """The customer left a message for the team (nobody claimed in time), kept masked after the
    earlier ones (the newest MAX_LEFT_MESSAGES). Only while the conversation waits or is held: an
    ended one is in no agent's queue, so nobody would read it (ConversationEnded; asking for a
    person again opens a new conversation)."""
    _require_active(conversation)
    left = {"text": mask_pii(text), "ts": now}
    kept = (*conversation.left_messages, left)[-MAX_LEFT_MESSAGES:]
    return replace(conversation, left_messages=kept)


def _require_active(conversation: Conversation) -> None:
    if not conversation.active:
        raise ConversationEnded(conversation.status)


def require_holder(conversation: Conversation, agent: str) -> None:
    """Only the agent holding the conversation may reply, type or end it: NotClaimed while it
    waits, HeldByAnother, or ConversationEnded."""
    _require_active(conversation)
    if conversation.status == "waiting":
        raise NotClaimed(conversation.session_id)
    if conversation.agent != agent:
        raise HeldByAnother(conversation.agent or "")


Update = Callable[[Conversation], Conversation]


class HandoffStore(Protocol):
    """Where conversations live; `update` applies a transition atomically (all workers)."""

    def open(self, conversation: Conversation, *, max_waiting: int | None = None) -> Conversation:
        """Store a new conversation unless the session already has an active one (returned).

        `max_waiting`: TooManyWaiting when `conversation.client` has that many waiting already
        (checked atomically with the opening, across workers), counting those handed off within
        the store's `counts_for_s` before `conversation.waiting_since`."""
        ...

    def get(self, session_id: str) -> Conversation | None: ...

    def update(self, session_id: str, change: Update) -> Conversation:
        """Apply `change` to the stored conversation atomically; raises what `change` raises."""
        ...

    def list(self, status: str, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        """Conversations in `status`, oldest handoff first: `limit` of them (all when None)
        from the `offset`-th. Reads only that status's conversations (at most `limit`)."""
        ...


class MemoryHandoffStore:
    """Conversations in this process (one lock: transitions are atomic within the process)."""

    def __init__(self, *, counts_for_s: int = COUNTS_FOR_S) -> None:
        """`counts_for_s`: how long a waiting conversation counts against its address's cap
        (the customers' `session_ttl_s`)."""
        self.counts_for_s = counts_for_s
        self._lock = threading.Lock()
        self._conversations: dict[str, Conversation] = {}

    def open(self, conversation: Conversation, *, max_waiting: int | None = None) -> Conversation:
        with self._lock:
            current = self._conversations.get(conversation.session_id)
            if current is not None and current.active:
                return current
            if max_waiting is not None and conversation.client is not None:
                counted_after = conversation.waiting_since - self.counts_for_s
                waiting = sum(
                    c.status == "waiting"
                    and c.client == conversation.client
                    and c.waiting_since > counted_after
                    for c in self._conversations.values()
                )
                if waiting >= max_waiting:
                    raise TooManyWaiting(waiting, max_waiting)
            self._conversations[conversation.session_id] = conversation
            return conversation

    def get(self, session_id: str) -> Conversation | None:
        with self._lock:
            return self._conversations.get(session_id)

    def update(self, session_id: str, change: Update) -> Conversation:
        with self._lock:
            current = self._conversations.get(session_id)
            if current is None:
                raise UnknownConversation(session_id)
            changed = change(current)
            self._conversations[session_id] = changed
            return changed

    def list(self, status: str, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        with self._lock:
            found = [c for c in self._conversations.values() if c.status == status]
        found.sort(key=lambda c: c.waiting_since)
        return found[offset:] if limit is None else found[offset : offset + limit]


def new_conversation(
    session_id: str,
    *,
    reason: str,
    page_url: str | None,
    candidates: list[dict[str, Any]],
    now: float | None = None,
    client: str | None = None,
) -> Conversation:
    return Conversation(
        session_id=session_id,
        status="waiting",
        waiting_since=round(time.time() if now is None else now, 3),
        reason=reason,
        page_url=page_url,
        candidates=tuple(candidates),
        client=client,
    )
