"""The answering policy: answer, clarify, out of scope, small talk or handoff. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from threefold.core.errors import ConfigError

Outcome = Literal["answer", "clarify", "out_of_scope", "small_talk", "handoff"]
# Below the threshold but at least this share of it, the bot asks to rephrase with suggestions
# (something in the KB is related); lower, the message is out of scope for this KB.
CLARIFY_SHARE = 0.25

# A request for a person: a contact verb before a person ("can I talk to a human", "put me
# through to one of your agents"), a person wanted where the request ends ("can I get a real
# person", "I need a human, this bot is useless") or followed by what they are for ("I need an
# agent for my return", "a person who can help me"), a person before "talk to" ("is there a human
# I can talk to?"), talking to someone, or a message that is nothing but a person ("agent
# please", "live agent"). A person named in a question ("I'm a travel agent, ...", "I need a
# person to pick up my order", "can I get a refund if the person I gifted it to...", "do you need
# a manager to approve it?") is not a request: only small words may stand between the verb and
# the person, and a plain "person" must end the request or be one "who" helps.
_PEOPLE = (
    r"(?:(?:real |actual |live )?person|(?:real|actual) people|someone real|"
    r"(?:someone|somebody) from (?:your|the) (?:team|staff))"
)
_STAFF = (
    r"(?:(?:live |real |actual |human |support |customer service )?"
    r"(?:agent|representative|rep|operator|manager|supervisor|human(?: being)?)s?)"
)
_PERSON = rf"(?:{_PEOPLE}|{_STAFF})(?![\w'-])"
_SMALL_WORDS = (
    r"(?:[\s,]+(?:me|us|it|this|to|with|through|directly|please|pls|a|an|the|one|of|your|some|"
    r"real|actual|live)){0,6}"
)
_CONTACT = r"\b(?:talk|speak|chat|connect|transfer|put|reach|contact|escalate)\b"
# want/need: the customer's, not another's or a question about one ("do you need a manager
# to...", "do I need an agent to sell my home?", "does my order need..."): `wants_human` reads
# those as "requires", which asks for nobody. get/give: "can you get me an agent?" asks.
_ASKS_ABOUT_NEED = re.compile(
    r"\b((?:(?:do|does|did|would|will|should|must|can|could)\s+(?:[\w']+\s+){1,3}?)"
    r"|(?:you|they|it|he|she)\s+)(?:need|want)s?\b",
    re.IGNORECASE,
)
_WANT = r"\b(?:get|give|want|need)\b"
# have/like only where the request ends ("can I have a human?", not "I like the agent who...")
_WOULD_HAVE = r"(?<!you )(?<!they )\b(?:have|like)\b"
_ENDS = (
    r"\W*$|\s*[,.!?;:]|\s+(?:please|pls|now|asap|right now|instead|here|not a bot|"
    r"on the (?:line|phone|chat)|to (?:talk|speak|chat|help|look|call|contact|handle|check|"
    r"answer|review|fix|sort|deal|explain|assist|resolve))\b"
)
_PEOPLE_ENDS = rf"(?={_ENDS}|\s+(?:who|that)\b)"
_STAFF_ENDS = rf"(?={_ENDS}|\s+(?:to|for|who|that|about|because|so)\b)"
_WANTED = rf"(?:{_PEOPLE}(?![\w'-]){_PEOPLE_ENDS}|{_STAFF}(?![\w'-]){_STAFF_ENDS})"
_HUMAN_REQUEST = re.compile(
    rf"{_CONTACT}{_SMALL_WORDS}[\s,]+{_PERSON}|"
    rf"{_WANT}{_SMALL_WORDS}[\s,]+{_WANTED}|"
    rf"{_WOULD_HAVE}{_SMALL_WORDS}[\s,]+{_PERSON}(?={_ENDS})|"
    rf"\b{_PERSON}(?:[\s,]+[^\s,]+){{0,3}}?[\s,]+(?:talk|speak|chat)\b|"
    r"\b(?:talk|speak|chat|(?:connect|transfer|put)(?: me| us)?(?: through)?) (?:to|with) "
    r"(?:someone|somebody|staff|support)\b|"
    rf"\b(?:help|support|assistance) from{_SMALL_WORDS}[\s,]+{_WANTED}|"
    rf"{_WANT}{_SMALL_WORDS}[\s,]+(?:human|real person|live person)(?:'s)? "
    r"(?:help|support|assistance)\b",
    re.IGNORECASE,
)
_ONLY_A_PERSON = re.compile(
    rf"^(?:(?:please|pls|a|an|the|real|live|now|chat|i want|i need)[\s,]+)*{_PERSON}"
    r"(?:\W+(?:please|pls|now))*\W*$",
    re.IGNORECASE,
)
_FOLLOW_UP_START = re.compile(
    r"^\s*(and|also|but|what about|how about|same for|what if|or|for)\b", re.IGNORECASE
)


def wants_human(message: str) -> bool:
    """True when the customer explicitly asks for a person (agent, human, representative...)."""
    text = _ASKS_ABOUT_NEED.sub(r"\1requires", message.strip())
    return bool(_HUMAN_REQUEST.search(text) or _ONLY_A_PERSON.match(text))


def starts_like_follow_up(message: str) -> bool:
    """The message opens with 'and', 'what about', 'also'...: it refers to the previous turn."""
    return bool(_FOLLOW_UP_START.match(message))


def looks_like_follow_up(message: str, *, max_words: int = 6) -> bool:
    """A short message or one starting with 'and', 'what about'... may lean on the previous turn."""
    return starts_like_follow_up(message) or len(message.split()) <= max_words


@dataclass(frozen=True)
class PolicySettings:
    """Policy knobs: `threshold` is a calibrated probability, `ambiguity_margin` a cosine gap."""

    threshold: float
    ambiguity_margin: float = 0.03
    handoff_after_failures: int = 2
    n_suggestions: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], found {self.threshold}")
        if not 0.0 <= self.ambiguity_margin < 1.0:
            raise ConfigError(
                f"ambiguity_margin must be within [0, 1), found {self.ambiguity_margin}"
            )
        if self.handoff_after_failures < 1:
            raise ConfigError(
                f"handoff_after_failures must be >= 1, found {self.handoff_after_failures}"
            )
        if self.n_suggestions < 0:
            raise ConfigError(f"n_suggestions must be >= 0, found {self.n_suggestions}")


@dataclass(frozen=True)
class Decision:
    """What to do with one message; `reason` explains it (answered, ambiguous, low_confidence,
    out_of_scope, requested, repeated_failure, selected, or the small-talk kind)."""

    outcome: Outcome
    reason: str
    counts_as_failure: bool = False


def decide(
    *,
    confidence: float,
    margin: float,
    confidence_if_clear: float,
    settings: PolicySettings,
    failures_so_far: int = 0,
    human_requested: bool = False,
    small_talk: str | None = None,
) -> Decision:
    """Decide for one message.

    Order: a request for a person hands off; a confident, clear answer is given; small talk
    (the KB does not answer it) gets its canned reply; two strong, close FAQs ask which one;
    otherwise it is a failure: clarify with suggestions when the top FAQ is at least
    `CLARIFY_SHARE` of the threshold, else out of scope; a repeated failure hands off.

    Args:
        confidence: calibrated probability that the top candidate is right.
        margin: cosine gap between the top two candidates.
        confidence_if_clear: the probability had the runner-up been `ambiguity_margin` further
            away; used to tell "two strong, close candidates" (ambiguous) from "nothing fits".
        failures_so_far: consecutive unanswered turns before this one in the session.
    """
    if human_requested:
        return Decision("handoff", "requested")
    ambiguous = margin < settings.ambiguity_margin and confidence_if_clear >= settings.threshold
    if confidence >= settings.threshold and not ambiguous:
        return Decision("answer", "answered")
    if small_talk is not None:
        return Decision("small_talk", small_talk)
    if ambiguous:
        return Decision("clarify", "ambiguous")
    if failures_so_far + 1 >= settings.handoff_after_failures:
        return Decision("handoff", "repeated_failure", counts_as_failure=True)
    if confidence >= CLARIFY_SHARE * settings.threshold:
        return Decision("clarify", "low_confidence", counts_as_failure=True)
    return Decision("out_of_scope", "out_of_scope", counts_as_failure=True)
