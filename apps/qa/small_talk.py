"""Small talk: greetings, thanks, goodbyes, acknowledgements and declines ("no", "nope": after
"Anything else?" or an answer), with canned replies.

A message is small talk when, lower-cased and without punctuation, it is one of the built-in
examples, or when it is short (`MAX_WORDS`) and the bot's own encoder puts it within
`MIN_COSINE` of one. The chat policy only uses it when the KB does not answer the message, so a
KB that has a "thank you" FAQ keeps answering it. Small talk is never a failure or a handoff.
"""

from __future__ import annotations

import re

import numpy as np

from threefold.core.encoder import TextEncoder

MAX_WORDS = 6
MIN_COSINE = 0.8

EXAMPLES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "hi", "hello", "hey", "hi there", "hello there", "hey there", "good morning",
        "good afternoon", "good evening", "howdy", "greetings",
    ),
    "thanks": (
        "thanks", "thank you", "thanks a lot", "thank you so much", "ok thanks", "okay thank you",
        "great thanks", "thanks for your help", "cheers", "many thanks", "thx", "ty",
    ),
    "goodbye": (
        "bye", "goodbye", "bye bye", "see you", "see you later", "have a nice day",
        "talk to you later", "that's all", "that is all for now", "good night",
    ),
    "acknowledgement": (
        "ok", "okay", "got it", "great", "cool", "perfect", "sounds good", "alright", "i see",
        "understood", "nice", "awesome", "makes sense", "fine",
    ),
    "decline": (
        "no", "nope", "nah", "no thanks", "no thank you", "not really", "nothing else",
        "no that's all", "no that is all", "all good", "no i'm good", "i'm good",
    ),
}  # fmt: skip

REPLIES = {
    "greeting": "Hello! I can help with {topics}. What would you like to know?",
    "thanks": "You're welcome! Is there anything else I can help with?",
    "goodbye": "Goodbye, and thanks for getting in touch!",
    "acknowledgement": "Glad that helped. Anything else I can help with?",
    "decline": (
        "Alright! If my last answer didn't cover it, tell me a bit more, or ask to talk to a "
        "person."
    ),
}

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
_LEADING = re.compile(
    r"^\s*(?:"
    + "|".join(re.escape(t) for ts in EXAMPLES.values() for t in sorted(ts, key=len, reverse=True))
    + r")(?:\s*[,.!;:-]+\s*(?:(?:and|also|one more thing|another question)\b\W*)?|\s+and\s+)",
    re.IGNORECASE,
)


def without_small_talk(message: str) -> str | None:
    """The question after leading small talk ("thanks! and how do I return shoes?" -> "how do
    I return shoes?"), or None when the message does not open with small talk followed by more."""
    match = _LEADING.match(message)
    if match is None:
        return None
    rest = message[match.end() :].strip()
    return rest if len(normalize(rest).split()) >= 2 else None


def normalize(message: str) -> str:
    """Lower-case, punctuation dropped, spaces collapsed: "Thanks!!" -> "thanks"."""
    return " ".join(_NOT_WORD.sub(" ", message.lower()).split())


class SmallTalk:
    """Matches messages against the built-in examples with one encoder (vectors made lazily)."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._exact = {normalize(text): kind for kind, texts in EXAMPLES.items() for text in texts}
        self._kinds = [kind for kind, texts in EXAMPLES.items() for _ in texts]
        self._vectors: np.ndarray | None = None

    def match(self, message: str, vector: np.ndarray | None = None) -> str | None:
        """The small-talk kind of the message (greeting, thanks, goodbye, acknowledgement,
        decline).

        `vector`: the message's encoding when the caller has it (saves a forward pass).
        """
        text = normalize(message)
        if not text or len(text.split()) > MAX_WORDS:
            return None
        if text in self._exact:
            return self._exact[text]
        if self._vectors is None:
            self._vectors = self.encoder.encode([t for ts in EXAMPLES.values() for t in ts])
        if vector is None:
            vector = self.encoder.encode([message])[0]
        sims = self._vectors @ vector
        best = int(np.argmax(sims))
        return self._kinds[best] if float(sims[best]) >= MIN_COSINE else None
