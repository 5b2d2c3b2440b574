"""The human side of a handoff: queue, claim, reply, hand back or close, typing, left messages.

Ties the conversation store (state, atomic transitions), the session store (the transcript the
customer sees) and the event bus (live updates for the console and the widget) together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threefold.apps.qa import handoff_queue
from threefold.apps.qa.handoff_events import QUEUE_CHANNEL, EventBus, session_channel
from threefold.apps.qa.handoff_queue import Conversation, HandoffStore, UnknownConversation
from threefold.apps.qa.sessions import Session, SessionStore, Turn, new_id

if TYPE_CHECKING:
    from threefold.apps.qa.metrics import QAMetrics


class SessionExpired(handoff_queue.HandoffError):
    """The customer's session has expired: nobody is left to read a reply."""


class AgentDesk:
    """Every operation publishes what changed, so consoles and widgets of all workers follow."""

    def __init__(
        self,
        *,
        store: HandoffStore,
        bus: EventBus,
        sessions: SessionStore,
        wait_timeout_s: float,
        metrics: QAMetrics | None = None,
        clock: Callable[[], float] = time.time,
        on_reply: Callable[[Session, Turn], object] | None = None,
    ) -> None:
        """`on_reply(session, turn)`: called after each agent reply is stored (its signal log)."""
        self.store = store
        self.bus = bus
        self.sessions = sessions
        self.wait_timeout_s = wait_timeout_s
        self.metrics = metrics
        self.clock = clock
        self.on_reply = on_reply

    def active(self, session_id: str) -> Conversation | None:
        """The session's conversation while it waits for or is held by a person."""
        conversation = self.store.get(session_id)
        return conversation if conversation is not None and conversation.active else None

    def hand_off(
        self,
        session: Session,
        *,
        reason: str,
        candidates: list[dict[str, Any]],
        page_url: str | None,
        client: str | None = None,
        max_waiting: int | None = None,
    ) -> Conversation:
        """Open the session's conversation (or give its active one); `announce` it once the
        customer's message is stored. TooManyWaiting (counted) when `client`, the customer's
        address, has `max_waiting` conversations waiting already."""
        conversation = handoff_queue.new_conversation(
            session.id,
            reason=reason,
            page_url=page_url,
            candidates=candidates,
            now=self.clock(),
            client=client,
        )
        try:
            return self.store.open(conversation, max_waiting=max_waiting)
        except handoff_queue.TooManyWaiting:
            if self.metrics is not None:
                self.metrics.observe_handoff_refused()
            raise

    def announce(self, conversation: Conversation) -> None:
        """Tell every worker's consoles that the conversation was handed off."""
        self._changed(conversation)

    def customer_wrote(self, session_id: str) -> None:
        conversation = self.store.get(session_id)
        if conversation is not None:
            self._changed(conversation)

    def claim(self, session_id: str, agent: str) -> Conversation:
        """`agent` takes the conversation. Claiming one you hold already answers the same and
        changes nothing: no second event, no second count; another agent's is HeldByAnother."""
        now = self.clock()
        taken: list[bool] = []

        def take(current: Conversation) -> Conversation:
            claimed = handoff_queue.claim(current, agent, now)
            taken[:] = [claimed is not current]  # the last try is the one stored
            return claimed

        conversation = self.store.update(session_id, take)
        if taken[0]:
            if self.metrics is not None:
                self.metrics.observe_claim(agent)
            self._notify_customer(
                session_id, {"type": "status", "status": "claimed", "agent": agent}
            )
            self._changed(conversation)
        return conversation

    def reply(self, session_id: str, agent: str, text: str) -> Turn:
        self._get(session_id)
        if self.sessions.get(session_id) is None:
            raise SessionExpired(session_id)
        now = self.clock()
        conversation = self.store.update(
            session_id, lambda c: handoff_queue.record_reply(c, agent, now)
        )
        turn = Turn(turn_id=new_id(), role="agent", text=text, ts=now, agent=agent)
        session = self.sessions.update(session_id, lambda s: s.turns.append(turn))
        if session is None:
            raise SessionExpired(session_id)
        if conversation.first_reply_at == now and self.metrics is not None:
            self.metrics.observe_first_reply(now - conversation.waiting_since)
        self._notify_customer(session_id, {"type": "message", "turn": turn.__dict__})
        self._changed(conversation)
        if self.on_reply is not None:
            self.on_reply(session, turn)
        return turn

    def end(self, session_id: str, agent: str, status: str) -> Conversation:
        """Hand the conversation back to the bot (`released`) or close it: the bot answers again."""
        conversation = self.store.update(
            session_id, lambda c: handoff_queue.end(c, agent, status, self.clock())
        )
        self.sessions.update(session_id, _back_to_the_bot)
        if self.metrics is not None:
            self.metrics.observe_end(status)
        self._notify_customer(session_id, {"type": "status", "status": status, "agent": agent})
        self._changed(conversation)
        return conversation

    def typing(self, session_id: str, *, agent: str | None) -> None:
        """Someone is typing: the customer (shown in the console) or the agent, shown in the
        widget only when they hold the conversation (what a reply needs; its errors otherwise)."""
        conversation = self._get(session_id)
        if agent is None:
            self.bus.publish(QUEUE_CHANNEL, {"type": "typing", "session_id": session_id})
        else:
            handoff_queue.require_holder(conversation, agent)
            self._notify_customer(session_id, {"type": "typing", "agent": agent})

    def leave_message(self, session_id: str, text: str) -> Conversation:
        """Store the customer's message for the team, after those left before (also in the
        transcript, after a reload; masked in both)."""
        now = self.clock()
        conversation = self.store.update(
            session_id, lambda c: handoff_queue.leave_message(c, text, now)
        )
        turn = Turn(turn_id=new_id(), role="user", text=text, ts=now)
        self.sessions.update(session_id, lambda s: s.turns.append(turn))
        self._changed(conversation)
        return conversation

    def conversations(
        self, status: str, *, limit: int | None = None, offset: int = 0
    ) -> list[Conversation]:
        """The status's conversations, oldest handoff first (`limit` of them from `offset`)."""
        if limit is None and not offset:
            return self.store.list(status)
        return self.store.list(status, limit=limit, offset=offset)

    def waiting_customers(self) -> int:
        """Waiting conversations whose customer may still be there (their session has not
        expired): the queue length agents should act on."""
        return sum(self.sessions.get(c.session_id) is not None for c in self.store.list("waiting"))

    def customer_state(self, session_id: str) -> dict[str, Any] | None:
        """What the widget shows: waiting (and whether too long), connected to whom, or ended."""
        conversation = self.store.get(session_id)
        if conversation is None:
            return None
        waited = self.clock() - conversation.waiting_since
        return {
            "status": conversation.status,
            "agent": conversation.agent,
            "waiting_since": conversation.waiting_since,
            "wait_timeout_s": self.wait_timeout_s,
            "timed_out": conversation.status == "waiting" and waited >= self.wait_timeout_s,
            "left_message": conversation.left_message is not None,
        }

    def summary(self, conversation: Conversation) -> dict[str, Any]:
        """The contract's list item: session_id, status, waiting_since, agent, last_message,
        session_expired (the customer has gone: nobody is left to read a reply)."""
        session = self.sessions.get(conversation.session_id)
        last = session.turns[-1] if session is not None and session.turns else None
        return {
            "session_id": conversation.session_id,
            "status": conversation.status,
            "waiting_since": conversation.waiting_since,
            "agent": conversation.agent,
            "last_message": None
            if last is None
            else {"role": last.role, "text": last.text, "ts": last.ts, "agent": last.agent},
            "page_url": conversation.page_url,
            "left_message": conversation.left_message,
            "left_messages": list(conversation.left_messages),
            "session_expired": session is None,
        }

    def detail(self, conversation: Conversation) -> dict[str, Any]:
        session = self.sessions.get(conversation.session_id)
        shown = {k: v for k, v in conversation.to_json().items() if k != "client"}
        return {
            **shown,
            **self.summary(conversation),
            "transcript": session.transcript() if session is not None else [],
        }

    def get(self, session_id: str) -> Conversation:
        return self._get(session_id)

    def _get(self, session_id: str) -> Conversation:
        conversation = self.store.get(session_id)
        if conversation is None:
            raise UnknownConversation(session_id)
        return conversation

    def _notify_customer(self, session_id: str, event: dict[str, Any]) -> None:
        self.bus.publish(session_channel(session_id), event)

    def _changed(self, conversation: Conversation) -> None:
        self.bus.publish(
            QUEUE_CHANNEL,
            {
                "type": "conversation",
                "session_id": conversation.session_id,
                "status": conversation.status,
            },
        )


def _back_to_the_bot(session: Session) -> None:
    """The session after a person let go: the bot answers and counts failures afresh."""
    session.handed_off = False
    session.failures = 0
