"""Small talk: greetings, thanks, goodbyes, acknowledgements and declines ("no", "nope": after
"Anything else?" or an answer), emoji reactions and messages without words, with canned replies.

A message is small talk when, lower-cased, without punctuation and accents, it is one of the
built-in examples (English `EXAMPLES`, and everyday forms of other languages) or a string of
them ("ok thanks, bye"); when it is short (`MAX_WORDS`) and the bot's own encoder puts it within
`MIN_COSINE` of an English example; or when it has no letter or digit at all ("👍", "🙏", "???").
The chat policy only uses it when the KB does not answer the message, so a KB that has a "thank
you" FAQ keeps answering it. Small talk is never a failure or a handoff.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

import numpy as np

from threefold.core.encoder import TextEncoder

MAX_WORDS = 6
MIN_COSINE = 0.8
# the longest message read as a string of small-talk phrases ("perfect, thank you very much for
# your help, bye"); longer ones are questions
MAX_PHRASES_WORDS = 12

EXAMPLES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "hi", "hello", "hey", "hi there", "hello there", "hey there", "good morning",
        "good afternoon", "good evening", "howdy", "greetings",
    ),
    "thanks": (
        "thanks", "thank you", "thanks a lot", "thank you so much", "ok thanks", "okay thank you",
        "great thanks", "thanks for your help", "cheers", "many thanks", "thx", "ty",
        "tks", "thank u", "thanx", "thnx", "tysm", "thank you very much",
    ),
    "goodbye": (
        "bye", "goodbye", "bye bye", "see you", "see you later", "have a nice day",
        "talk to you later", "that's all", "that is all for now", "good night",
        "see ya", "cya", "see you soon", "take care", "have a good day", "have a good one",
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
# Everyday forms in French, Spanish, German, Portuguese, Italian and Russian: matched as written
# (accents optional), never by the encoder, which is English.
OTHER_LANGUAGES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "bonjour", "bonsoir", "salut", "hola", "buenos días", "buenas tardes", "buenas",
        "hallo", "guten tag", "guten morgen", "moin", "olá", "oi", "bom dia", "boa tarde",
        "ciao", "buongiorno", "buonasera", "привет", "здравствуйте", "добрый день",
    ),
    "thanks": (
        "merci", "merci beaucoup", "gracias", "muchas gracias", "danke", "danke schön",
        "vielen dank", "obrigado", "obrigada", "muito obrigado", "muito obrigada", "grazie",
        "grazie mille", "спасибо", "спасибо большое", "большое спасибо",
    ),
    "goodbye": (
        "au revoir", "à bientôt", "bonne journée", "adiós", "hasta luego", "chao", "tschüss",
        "auf wiedersehen", "bis bald", "tchau", "até logo", "arrivederci", "a presto", "пока",
        "до свидания",
    ),
}  # fmt: skip
# Words that join or pad small-talk phrases ("thank you very much for your help, bye"); never
# small talk on their own.
FILLERS = (
    "and", "so", "then", "again", "very much", "so much", "a lot", "for your help",
    "for the help", "for helping", "for that", "for the info", "for everything", "you too",
    "guys", "mate", "oh", "well", "anyway",
)  # fmt: skip
# Common emoji reactions (skin tones and emoji variation selectors are ignored).
REACTIONS: dict[str, str] = {
    **dict.fromkeys("👍👌👏🙌💯✅✔🆗🙂😊☺😀😃😄😁😉😎😂🤣🎉", "acknowledgement"),
    **dict.fromkeys("🙏❤♥💙💚💛💜🧡💕🥰😍🤗", "thanks"),
    "👋": "greeting",
    **dict.fromkeys("👎🙁☹😕😞😒", "decline"),
}
# A message with no letter or digit that is no known reaction ("???", "🤔").
NO_WORDS = "no_words"
# Which kind a string of phrases is ("thanks, bye" is a goodbye), first first.
PRECEDENCE = ("goodbye", "decline", "thanks", "greeting", "acknowledgement")

REPLIES = {
    "greeting": "Hello! I can help with {topics}. What would you like to know?",
    "thanks": "You're welcome! Is there anything else I can help with?",
    "goodbye": "Goodbye, and thanks for getting in touch!",
    "acknowledgement": "Glad that helped. Anything else I can help with?",
    "decline": (
        "Alright! If my last answer didn't cover it, tell me a bit more, or ask to talk to a "
        "person."
    ),
    NO_WORDS: "What can I help you with? I can answer questions about {topics}.",
}
# The reply of an acknowledgement or decline that does not follow an answer.
NEUTRAL_REPLY = "Okay. What can I help you with?"

_FILLER = "filler"
# words that tie what follows to the thanks before ("thanks for your help with my return")
_HANGING = frozenset({"about", "for", "in", "of", "on", "regarding", "to", "with"})
_WORD = re.compile(r"(?:[^\W_]|')+")
_IGNORED_IN_EMOJI = re.compile("[\ufe0f\u200d\U0001f3fb-\U0001f3ff]")


def _fold(message: str) -> str:
    """NFC, accents dropped and ’ as ', one character for one ("Adiós" -> "Adios")."""
    text = unicodedata.normalize("NFC", message).replace("’", "'")
    return "".join(unicodedata.normalize("NFD", char)[0] for char in text)


def normalize(message: str) -> str:
    """Lower-case, punctuation and accents dropped, spaces collapsed: "Adiós!!" -> "adios"."""
    return " ".join(_WORD.findall(_fold(message).lower()))


_PHRASES: dict[str, str] = {
    **{normalize(text): _FILLER for text in FILLERS},
    **{
        normalize(text): kind
        for examples in (EXAMPLES, OTHER_LANGUAGES)
        for kind, texts in examples.items()
        for text in texts
    },
}
_LONGEST = max(len(phrase.split()) for phrase in _PHRASES)
_LEADING = re.compile(
    r"^\s*(?:"
    + "|".join(
        re.escape(t) for t in sorted(_PHRASES, key=len, reverse=True) if _PHRASES[t] != _FILLER
    )
    + r")(?:\s*[,.!;:-]+\s*(?:(?:and|also|one more thing|another question)\b\W*)?|\s+and\s+)",
    re.IGNORECASE,
)


def _segment(words: list[str], kinds: Collection[str] = PRECEDENCE) -> list[list[str] | None]:
    """For each prefix of `words` (by length), the kinds of the fewest small-talk phrases of
    `kinds` and fillers it is made of ("filler" for one), or None when it is not made of them."""
    best: list[list[str] | None] = [[], *([None] * len(words))]
    for end in range(1, len(words) + 1):
        for start in range(max(0, end - _LONGEST), end):
            before, kind = best[start], _PHRASES.get(" ".join(words[start:end]))
            if before is None or kind is None or (kind != _FILLER and kind not in kinds):
                continue
            current = best[end]
            if current is None or len(before) + 1 < len(current):
                best[end] = [*before, kind]
    return best


def _phrases_kind(words: list[str]) -> str | None:
    """The kind of words made only of small-talk phrases and fillers, or None."""
    if len(words) > MAX_PHRASES_WORDS:
        return None
    kinds = _segment(words)[-1] or []
    return next((kind for kind in PRECEDENCE if kind in kinds), None)


def reaction_kind(message: str) -> str:
    """The small-talk kind of a message without letters or digits: its emoji reaction's kind
    ("👍" -> acknowledgement, "🙏" -> thanks), else `NO_WORDS`."""
    kinds = {REACTIONS.get(char) for char in _IGNORED_IN_EMOJI.sub("", message)}
    return next((kind for kind in PRECEDENCE if kind in kinds), NO_WORDS)


def without_small_talk(message: str) -> str | None:
    """The question after leading small talk ("thanks! and how do I return shoes?", "hi where's
    my order"), or None when the message does not open with small talk followed by more.

    After punctuation or "and" any small talk opens; with a space only, a greeting or thanks
    ("hi there", "thank you so much") followed by at least two words that are not small talk.
    """
    text = unicodedata.normalize("NFC", message)
    folded = _fold(text)  # as long as `text`: positions in one are positions in the other
    match = _LEADING.match(folded)
    if match is not None:
        rest = text[match.end() :].strip()
        return rest if len(normalize(rest).split()) >= 2 else None
    tokens = list(_WORD.finditer(folded))
    words = [token.group().lower() for token in tokens]
    leading = _segment(words[:MAX_PHRASES_WORDS], kinds=("greeting", "thanks"))
    # the longest opening that ends on a greeting or thanks, and no rest that hangs on it:
    # "thanks for your help with my return" is no "with my return"
    opening = max(
        (n for n, kinds in enumerate(leading) if kinds and kinds[-1] != _FILLER), default=0
    )
    rest = words[opening:]
    if not opening or len(rest) < 2 or rest[0] in _HANGING or _phrases_kind(rest) is not None:
        return None
    return text[tokens[opening].start() :].strip()


def reply_template(kind: str, *, after_answer: bool) -> str:
    """The canned reply to small talk of this kind ({topics} to fill in). An acknowledgement or
    a decline speaks of the last answer only when it follows one (`after_answer`: the bot's
    latest reply, small talk aside, answered); otherwise it gets `NEUTRAL_REPLY`."""
    if kind in ("acknowledgement", "decline") and not after_answer:
        return NEUTRAL_REPLY
    return REPLIES[kind]


class SmallTalk:
    """Matches messages against the built-in examples with one encoder (vectors made lazily)."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._kinds = [kind for kind, texts in EXAMPLES.items() for _ in texts]
        self._vectors: np.ndarray | None = None

    def match(self, message: str, vector: np.ndarray | None = None) -> str | None:
        """The small-talk kind of the message (greeting, thanks, goodbye, acknowledgement,
        decline, or no_words for a message without letters or digits), or None.

        `vector`: the message's encoding when the caller has it (saves a forward pass).
        """
        if not any(char.isalnum() for char in message):
            return reaction_kind(message)
        words = normalize(message).split()
        kind = _phrases_kind(words)
        if kind is not None or len(words) > MAX_WORDS:
            return kind
        if self._vectors is None:
            self._vectors = self.encoder.encode([t for ts in EXAMPLES.values() for t in ts])
        if vector is None:
            vector = self.encoder.encode([message])[0]
        sims = self._vectors @ vector
        best = int(np.argmax(sims))
        return self._kinds[best] if float(sims[best]) >= MIN_COSINE else None
