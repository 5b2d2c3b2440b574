"""The answer / clarify / handoff policy."""

from __future__ import annotations

import time

import pytest

from threefold.apps.qa.policy import PolicySettings, decide, looks_like_follow_up, wants_human
from threefold.core.errors import ConfigError

SETTINGS = PolicySettings(threshold=0.5, ambiguity_margin=0.03, handoff_after_failures=2)


def run(confidence: float, margin: float, if_clear: float | None = None, **kw: object) -> str:
    decision = decide(
        confidence=confidence,
        margin=margin,
        confidence_if_clear=confidence if if_clear is None else if_clear,
        settings=SETTINGS,
        **kw,  # type: ignore[arg-type]
    )
    return f"{decision.outcome}:{decision.reason}"


def test_confident_and_clear_answers() -> None:
    assert run(0.9, 0.2) == "answer:answered"


def test_two_close_strong_candidates_ask_to_clarify() -> None:
    assert run(0.4, 0.01, if_clear=0.8) == "clarify:ambiguous"
    assert run(0.7, 0.01, if_clear=0.9) == "clarify:ambiguous"


def test_low_confidence_clarifies_then_hands_off() -> None:
    assert run(0.2, 0.2, failures_so_far=0) == "clarify:low_confidence"
    assert run(0.2, 0.2, failures_so_far=1) == "handoff:repeated_failure"


def test_explicit_request_for_a_person_hands_off_even_when_confident() -> None:
    assert run(0.99, 0.5, human_requested=True) == "handoff:requested"


@pytest.mark.parametrize(
    "message",
    [
        "Can I talk to a human?",
        "I want a real person",
        "agent please",
        "speak with someone",
        "live agent",
        "get me a real human",
        "transfer me to a representative",
        "is there a human I can talk to?",
        "I need to speak to a manager",
        "talk to a human",
        "I want to speak to an agent",
        "can I get a real person",
        "human please",
        "agent",
        "connect me with someone",
        "let me talk to a representative",
        "put me through to one of your agents",
        "I need a human, this bot is useless",
        "I want a human agent",
        "can i get a human agent please",
        "I want a human agent to help me",
        "I need help from a human",
        "need human help",
        "Can I have a human?",
        "I would like a human",
        "I need a human to sort this out",
        "i need a representative to fix my order",
        "get me a representative for billing",
        "need an agent for my return",
        "need help from an agent about my return",
        "I want a real person to answer my question",
        "I need a person who can help me",
        "i need an actual person to review my case",
        "I want an agent that can actually help",
        "could you get me an agent?",
        "can you give me a human",
        "Can you get me a manager?",
        "Do I need to talk to a human?",
    ],
)
def test_requests_for_a_person_are_recognized(message: str) -> None:
    assert wants_human(message)


@pytest.mark.parametrize("message", ["How do I reset my password?", "Where is my parcel?"])
def test_ordinary_questions_are_not_handoff_requests(message: str) -> None:
    assert not wants_human(message)


@pytest.mark.parametrize(
    "message",
    [
        "I'm a travel agent, can I get a business account?",
        "Do you have an agent program?",
        "Does the delivery agent need a signature?",
        "Can I send a gift card to a person abroad?",
        "Is there a human-readable invoice?",
        "My parcel says 'operator error'",
        "I need a person to pick up my order in store, is that ok?",
        "Can I get a refund if the person I gifted it to doesn't want it?",
        "want to know if a human checks the returns",
        "Can I transfer my gift card to someone?",
        "Does the help from a human agent cost extra?",
        "do you have an agent in my area?",
        "I would like a person to pick up my parcel",
        "I have a person who can pick it up",
        "I like the agent who helped me",
        "Do you need a manager to approve refunds?",
        "I need a manager's approval",
        "I'm a travel agent, I need an agent account",
        "Do I need an agent to sell my home?",
        "would I need a supervisor to sign off on the refund?",
        "Does my order need a manager to approve it?",
        "do we need an agent for customs?",
    ],
)
def test_a_person_named_in_a_question_is_not_a_handoff_request(message: str) -> None:
    """Only asking for a person hands off; a question that mentions one is answered."""
    assert not wants_human(message)


def test_small_talk_is_never_a_failure_however_many_failures_came_before() -> None:
    assert run(0.0, 0.0, failures_so_far=5, small_talk="no_words") == "small_talk:no_words"


def test_human_request_detection_stays_fast_on_long_messages() -> None:
    started = time.perf_counter()
    for message in ("talk " + "'" * 995, "get " * 250, "agent" + "!" * 995 + "x"):
        wants_human(message)
    assert time.perf_counter() - started < 0.5


def test_follow_up_detection() -> None:
    assert looks_like_follow_up("and to Mexico?")
    assert looks_like_follow_up("What about business accounts with several users and invoices?")
    assert not looks_like_follow_up("How long does shipping to Mexico take for large furniture?")


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="handoff_after_failures must be >= 1, found 0"):
        PolicySettings(threshold=0.5, handoff_after_failures=0)
