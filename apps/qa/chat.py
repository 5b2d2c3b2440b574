"""One chat turn: retrieve, use the previous turn for follow-ups, decide, remember, hand off."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from threefold.apps.qa.agent_desk import AgentDesk
from threefold.apps.qa.bot import Bot, Retrieval
from threefold.apps.qa.feedback import FeedbackStore
from threefold.apps.qa.handoff import HandoffNotifier
from threefold.apps.qa.handoff_queue import Conversation
from threefold.apps.qa.policy import (
    Decision,
    decide,
    looks_like_follow_up,
    starts_like_follow_up,
    wants_human,
)
from threefold.apps.qa.sessions import Session, SessionStore, Turn, new_id
from threefold.apps.qa.small_talk import reply_template, without_small_talk
from threefold.core.redis_breaker import CONNECTION_FAILURES, RedisBreaker

logger = logging.getLogger(__name__)
HANDOFF_CANDIDATES = 5

REPLIES = {
    "ambiguous": "I found more than one possible answer. Which of these do you mean?",
    "low_confidence": (
        "Sorry, I'm not sure I understood. Could you rephrase, or pick one of these questions?"
    ),
    "requested": "I'm connecting you with a member of our team. They will reply here shortly.",
    "repeated_failure": (
        "I couldn't find an answer, so I've passed your question to a member of our team. "
        "They will reply here shortly."
    ),
    "out_of_scope": (
        "Sorry, that's not something I can answer. I can help with {topics}. "
        'To reach a person, type "talk to a person".'
    ),
}
FAILURE_REASONS = ("low_confidence", "out_of_scope")


def reply_text(template: str, bot: Bot) -> str:
    """A canned reply (`REPLIES`, small talk's), with the KB's topics where the text names them."""
    if "{topics}" not in template:
        return template
    topics = bot.kb.topics()
    if not topics:
        examples = [f'"{entry.question}"' for entry in list(bot.kb)[:2]]
        return template.format(topics="questions such as " + " or ".join(examples))
    topics = [topic.lower() for topic in topics]
    listed = topics[0] if len(topics) == 1 else ", ".join(topics[:-1]) + " and " + topics[-1]
    return template.format(topics=listed)


class UnknownSession(KeyError):
    """The session id is not known (never created, or expired)."""


class UnknownTurn(KeyError):
    """The turn id is not an answer of this session."""


class HandoffUnavailable(RuntimeError):
    """A message for our team that nobody would receive now: a handoff while the agent desk is
    out of reach and no webhook is set, or a message of a session last seen with a person while
    the desk cannot be read."""


@dataclass
class ChatReply:
    """The response of POST /api/chat."""

    session_id: str
    turn_id: str
    answer: str | None
    confidence: float
    faq_id: str | None
    suggestions: list[dict[str, str]]
    handoff: bool
    outcome: str
    reason: str
    reply: str
    used_context: bool = False
    bot_version: str = ""
    question: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def remember(session: Session, message: str, reply: ChatReply) -> None:
    """Append the customer's message and the bot's reply to the session and count failures."""
    now = time.time()
    session.turns.append(Turn(turn_id=new_id(), role="user", text=message, ts=now))
    session.turns.append(
        Turn(
            turn_id=reply.turn_id,
            role="bot",
            text=reply.reply,
            ts=now,
            faq_id=reply.faq_id,
            confidence=reply.confidence,
            outcome=reply.outcome,
            suggestions=reply.suggestions,
            bot_version=reply.bot_version,
        )
    )
    if reply.outcome == "answer":
        session.failures = 0
    elif reply.outcome == "handoff":
        session.failures = 0
        session.handed_off = True
    elif reply.reason in FAILURE_REASONS:
        session.failures += 1


class ChatService:
    """Stateless between calls: the bot comes from `get_bot`, state lives in the session store."""

    def __init__(
        self,
        *,
        get_bot: Callable[[], Bot],
        sessions: SessionStore,
        feedback: FeedbackStore,
        notifier: HandoffNotifier,
        threshold: float | None = None,
        ambiguity_margin: float | None = None,
        handoff_after_failures: int = 2,
        n_suggestions: int = 3,
        observe: Callable[[ChatReply], None] | None = None,
        desk: AgentDesk | None = None,
        desk_breaker: RedisBreaker | None = None,
        last_seen_with_person: Callable[[str], bool] | None = None,
        shared_sessions: SessionStore | None = None,
    ) -> None:
        """`desk_breaker`: the circuit breaker of the Redis the desk lives in; its connection
        failures mean the desk is out of reach, logged once per outage (`first_fallback`).
        `last_seen_with_person(session_id)`: whether this process last saw the session with
        a person (asked when the desk is out of reach). `shared_sessions`: where messages for a
        person are written, a store every worker and the console read (default `sessions`)."""
        self.get_bot = get_bot
        self.sessions = sessions
        self.feedback = feedback
        self.notifier = notifier
        self.threshold = threshold
        self.ambiguity_margin = ambiguity_margin
        self.handoff_after_failures = handoff_after_failures
        self.n_suggestions = n_suggestions
        self.observe = observe
        self.desk = desk
        self.desk_breaker = desk_breaker
        # errors that mean the desk's store is out of reach: the bot then answers (unless the
        # session was last seen with a person), and a handoff is announced by the webhook alone
        self.desk_unavailable = CONNECTION_FAILURES if desk_breaker is not None else ()
        self.last_seen_with_person = last_seen_with_person
        self.shared_sessions = sessions if shared_sessions is None else shared_sessions

    def open_session(self, session_id: str | None) -> Session:
        if session_id is None:
            return self.sessions.create()
        session = self.sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        return session

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        faq_id: str | None = None,
        page_url: str | None = None,
        with_person: bool = False,
        client: str | None = None,
        max_waiting: int | None = None,
    ) -> ChatReply:
        """Answer one customer message (or a clicked suggestion when `faq_id` is given).

        While a person waits for or holds the conversation the bot stays silent: the message goes
        to the agent console and the reply has outcome "agent" and no answer. When the desk
        cannot be read and this process last saw the session with a person, or the client says it
        was (`with_person`: the widget knows, whichever worker it reached before),
        HandoffUnavailable (the message is refused, not answered by the bot behind the person's
        back).

        A handoff opens the conversation before the turn is stored: TooManyWaiting (nothing
        stored) when `client`, the customer's address, has `max_waiting` conversations waiting.
        """
        session = self.open_session(session_id)
        bot = self.get_bot()
        conversation, desk_reachable = self._active_conversation(session.id)
        if self.desk is not None and conversation is not None:
            return self._pass_to_agent(self.desk, bot, session, message, conversation.status)
        if not desk_reachable and (with_person or self._last_seen_with_person(session.id)):
            logger.warning(
                "agent desk unreachable: message of session %s, last seen with a person, refused",
                session.id,
            )
            raise HandoffUnavailable(session.id)
        settings = bot.policy_settings(
            threshold=self.threshold,
            ambiguity_margin=self.ambiguity_margin,
            handoff_after_failures=self.handoff_after_failures,
            n_suggestions=self.n_suggestions,
        )
        used_context = False
        if faq_id is not None and faq_id not in bot.kb:  # a suggestion removed since it was shown:
            logger.info("suggested FAQ %s is gone; answering the message instead", faq_id)
            faq_id = None  # its text (the widget sends the question) is asked as it is
        exact = None if faq_id is not None or wants_human(message) else bot.exact_faq(message)
        small_talk = None
        if faq_id is not None or exact is not None:
            result = None
            confidence = 1.0
            chosen = faq_id or exact
        else:
            small_talk = bot.small_talk.match(message)
            result, used_context = self._retrieve(
                bot, message, session, settings.threshold, follow_up=small_talk is None
            )
            confidence = result.confidence
            chosen = result.ranking.top.faq_id if result.ranking.top else None

        decided: tuple[Decision, ChatReply] | None = None
        candidates: list[dict[str, Any]] = []  # shown to a person: built only for a handoff
        opened: Conversation | None = None

        def answer(stored: Session) -> None:
            """Decide on the stored failure count and remember the turn: one atomic change, so
            concurrent messages of the session all stay and their failures add up."""
            nonlocal decided, opened, candidates
            if result is None:
                decision = Decision("answer", "selected" if faq_id is not None else "answered")
            else:
                decision = decide(
                    confidence=result.confidence,
                    margin=result.ranking.margin,
                    confidence_if_clear=result.confidence_if_clear,
                    settings=settings,
                    failures_so_far=stored.failures,
                    human_requested=wants_human(message),
                    small_talk=small_talk,
                )
            if decision.outcome == "handoff":
                if not desk_reachable:
                    self._check_handoff_deliverable(stored.id)
                candidates = self._candidates(bot, result)
                opened = self._open_conversation(
                    stored, decision, candidates, page_url, client, max_waiting
                )
            reply = self._reply(bot, stored, message, decision, result, confidence, chosen)
            reply.used_context = used_context
            remember(stored, message, reply)
            decided = decision, reply

        stored = self.sessions.update(session.id, answer)
        if stored is None or decided is None:
            raise UnknownSession(session.id)
        decision, reply = decided
        session = stored
        if decision.outcome == "handoff":
            self._hand_off(bot, session, message, decision, result, candidates, opened)
        if decision.outcome not in ("answer", "small_talk"):
            self.feedback.log_unanswered(
                session_id=session.id,
                question=message,
                reason=decision.reason,
                confidence=confidence,
                candidates=[s["faq_id"] for s in reply.suggestions],
                bot_version=reply.bot_version,
            )
        if self.observe is not None:
            self.observe(reply)
        return reply

    def _retrieve(
        self, bot: Bot, message: str, session: Session, threshold: float, *, follow_up: bool
    ) -> tuple[Retrieval, bool]:
        """Retrieve for the message alone and, for a likely follow-up, in context.

        Small talk ("ok thanks") is never read as a follow-up (`follow_up=False`), nor used as
        the context of one: the context is the latest message that was not small talk.

        The in-context result wins when it is more confident, or when the message opens like a
        follow-up ("and ...", "what about ...") and the in-context result is answerable.

        A question after leading small talk ("thanks! and how do I return shoes?") is also
        retrieved without it; the more confident result is kept.
        """
        k = max(self.n_suggestions, HANDOFF_CANDIDATES)
        result = bot.retrieve(message, k=k)
        question = without_small_talk(message) if follow_up else None
        if question is not None:
            alone = bot.retrieve(question, k=k)
            result = alone if alone.confidence > result.confidence else result
        previous, answered = session.follow_up_context()
        if follow_up and previous and looks_like_follow_up(message):
            combined = bot.retrieve_in_context(message, previous, answered=answered, k=k)
            explicit = starts_like_follow_up(message) and combined.confidence >= threshold
            if explicit or combined.confidence > result.confidence:
                return combined, True
        return result, False

    def _reply(
        self,
        bot: Bot,
        session: Session,
        message: str,
        decision: Decision,
        result: Retrieval | None,
        confidence: float,
        chosen: str | None,
    ) -> ChatReply:
        answered = decision.outcome == "answer" and chosen is not None
        entry = bot.kb[chosen] if answered and chosen is not None else None
        if entry is not None:
            text = entry.answer
        elif decision.outcome == "small_talk":
            # "ok" / "no" speak of the last answer only after one (small talk in between aside)
            _, answered_faq = session.follow_up_context()
            text = reply_text(
                reply_template(decision.reason, after_answer=answered_faq is not None), bot
            )
        else:
            text = reply_text(REPLIES[decision.reason], bot)
        suggestions: list[dict[str, str]] = []
        if decision.outcome in ("clarify", "handoff") and result is not None:
            suggestions = [
                {"faq_id": c.faq_id, "question": bot.kb[c.faq_id].question}
                for c in result.ranking.candidates[: self.n_suggestions]
            ]
        return ChatReply(
            session_id=session.id,
            turn_id=new_id(),
            answer=entry.answer if entry else None,
            confidence=round(confidence, 4),
            faq_id=entry.id if entry else None,
            suggestions=suggestions,
            handoff=decision.outcome == "handoff",
            outcome=decision.outcome,
            reason=decision.reason,
            reply=text,
            bot_version=bot.version,
            question=entry.question if entry else None,
        )

    @staticmethod
    def _candidates(bot: Bot, result: Retrieval | None) -> list[dict[str, Any]]:
        """The top candidates a person is shown with a handoff (none for a clicked FAQ)."""
        if result is None:
            return []
        return [
            {
                "faq_id": c.faq_id,
                "question": bot.kb[c.faq_id].question,
                "answer": bot.kb[c.faq_id].answer,
                "score": round(c.score, 4),
            }
            for c in result.ranking.candidates[:HANDOFF_CANDIDATES]
        ]

    def _open_conversation(
        self,
        session: Session,
        decision: Decision,
        candidates: list[dict[str, Any]],
        page_url: str | None,
        client: str | None,
        max_waiting: int | None,
    ) -> Conversation | None:
        """Open the conversation with a person; None when the desk is out of reach (then the
        webhook alone announces it, or HandoffUnavailable when there is none)."""
        if self.desk is None:
            return None
        try:
            return self.desk.hand_off(
                session,
                reason=decision.reason,
                candidates=candidates,
                page_url=page_url,
                client=client,
                max_waiting=max_waiting,
            )
        except self.desk_unavailable as exc:
            self._check_handoff_deliverable(session.id)
            logger.warning(
                "agent desk unavailable (%s): session %s announced by webhook only",
                type(exc).__name__,
                session.id,
            )
            return None

    def _hand_off(
        self,
        bot: Bot,
        session: Session,
        message: str,
        decision: Decision,
        result: Retrieval | None,
        candidates: list[dict[str, Any]],
        conversation: Conversation | None,
    ) -> None:
        """Announce the stored handoff: the webhook, then the agents' consoles."""
        payload = {
            "event": "handoff",
            "session_id": session.id,
            "reason": decision.reason,
            "message": message,
            "transcript": session.transcript(),
            "candidates": candidates,
            "confidence": round(result.confidence, 4) if result else None,
            "bot_version": bot.version,
            "ts": round(time.time(), 3),
        }
        logger.info("handing off session %s (%s)", session.id, decision.reason)
        self.notifier.notify(payload)
        if self.desk is not None and conversation is not None:
            self.desk.announce(conversation)

    def _check_handoff_deliverable(self, session_id: str) -> None:
        """Raise HandoffUnavailable unless the webhook still announces a handoff the desk missed."""
        if not self.notifier.configured:
            logger.warning("agent desk unreachable, no webhook: handoff of %s refused", session_id)
            raise HandoffUnavailable(session_id)

    def _active_conversation(self, session_id: str) -> tuple[Conversation | None, bool]:
        """The session's conversation with a person (None also when the desk is out of reach),
        and whether the desk answered."""
        if self.desk is None:
            return None, True
        try:
            conversation = self.desk.active(session_id)
        except self.desk_unavailable:
            # one warning per outage, not one per chat (the breaker logs Redis back)
            cause = self.desk_breaker.first_fallback("agent desk") if self.desk_breaker else None
            if cause is not None:
                logger.warning(
                    "agent desk unavailable (%s: %s): the bot answers until it is back",
                    cause.error_type,
                    cause.message,
                )
            return None, False
        return conversation, True

    def _last_seen_with_person(self, session_id: str) -> bool:
        return self.last_seen_with_person is not None and self.last_seen_with_person(session_id)

    def _pass_to_agent(
        self, desk: AgentDesk, bot: Bot, session: Session, message: str, status: str
    ) -> ChatReply:
        """Keep the customer's message for the person (no bot answer, no unanswered log).

        Appended atomically to the shared store (never only to this worker's memory, where the
        console would not see it): an agent's reply stored at the same moment is not overwritten.
        """
        turn = Turn(turn_id=new_id(), role="user", text=message, ts=time.time())
        if self.shared_sessions.update(session.id, lambda s: s.turns.append(turn)) is None:
            raise UnknownSession(session.id)
        desk.customer_wrote(session.id)
        reply = ChatReply(
            session_id=session.id,
            turn_id=new_id(),
            answer=None,
            confidence=0.0,
            faq_id=None,
            suggestions=[],
            handoff=False,
            outcome="agent",
            reason="agent_owned" if status == "claimed" else "waiting_for_agent",
            reply="",
            bot_version=bot.version,
        )
        if self.observe is not None:
            self.observe(reply)
        return reply

    def session_view(self, session: Session) -> list[dict[str, Any]]:
        """The session's turns for the widget: bot answers also carry `faq_question`, the
        question of the FAQ they came from (None when that FAQ has since been removed)."""
        kb = self.get_bot().kb
        turns = session.transcript()
        for turn in turns:
            faq_id = turn.get("faq_id")
            turn["faq_question"] = kb[faq_id].question if faq_id and faq_id in kb else None
        return turns

    def record_feedback(
        self, *, session_id: str, turn_id: str, rating: str, comment: str = ""
    ) -> dict[str, Any]:
        """Store a thumbs up/down on one bot answer of the session; a second vote replaces the
        first (the session keeps the vote, so the widget shows it after a reload). The vote is
        set in one atomic change of the stored session: a turn or an agent's reply written at
        the same moment stays."""
        rated: dict[str, Any] = {}

        def rate(session: Session) -> None:
            turn = session.bot_turn(turn_id)
            if turn is None:
                raise UnknownTurn(turn_id)
            position = session.turns.index(turn)
            turn.rating = rating
            rated.update(
                faq_id=turn.faq_id,
                question=session.turns[position - 1].text if position > 0 else "",
                answer=turn.text,
                bot_version=turn.bot_version or "",
            )

        if self.sessions.update(session_id, rate) is None:
            raise UnknownSession(session_id)
        return self.feedback.record_feedback(
            session_id=session_id, turn_id=turn_id, rating=rating, comment=comment, **rated
        )
