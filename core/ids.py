"""The characters an id may hold (a FAQ id, a user id): one rule, its text and its errors.

An id is stored NFC-normalized and trimmed, so composed and decomposed spellings of an
accented letter are one id (FAQ ids); ids that were stored as given before this rule (recs user
ids: a user's history is keyed by the spelling it was posted in) stay as given, only trimmed and
checked (`check_id(..., normalize=False)`). An id holds letters, digits, marks, punctuation,
symbols and plain spaces (U+0020), at least one of them visible. Refused, because each is
invisible, reorders the text around it or breaks a line: control and format characters, other
spaces, line and paragraph separators, private-use characters, lone surrogates, and blank
fillers (letters and symbols that draw nothing, such as U+3164 HANGUL FILLER and U+2800 BRAILLE
PATTERN BLANK).

Unassigned code points are allowed: this Python's Unicode data is older than the emoji people
type (U+1FAE8 SHAKING FACE, Unicode 15, is unassigned to Python 3.11), and refusing them would
refuse a name with a new emoji.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from threefold.core.errors import DataError

# what an id may not hold, by Unicode category
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Co": "a private-use character",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Zs": "a space other than U+0020",
}
# letters, marks and symbols that draw nothing: an id made of them looks empty where it is shown
BLANK_LOOKALIKES = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800")
_KINDS = {**REFUSED_CATEGORIES, "Cn": "an unassigned code point"}
_SHOWN_CHARS = 60  # how much of a refused id an error message shows


def describe(char: str) -> str:
    """`U+200B ZERO WIDTH SPACE (an invisible format character)`: code point, name, kind."""
    category = unicodedata.category(char)
    kind = "a blank filler" if char in BLANK_LOOKALIKES else _KINDS.get(category, category)
    name = unicodedata.name(char, "")  # control characters have none
    return f"U+{ord(char):04X}{' ' + name if name else ''} ({kind})"


def is_visible(char: str) -> bool:
    """A letter, digit, punctuation or symbol that draws something (not a space, a mark alone,
    a control or format character, or a blank filler)."""
    return unicodedata.category(char)[0] in "LNPS" and char not in BLANK_LOOKALIKES


def _allowed(char: str) -> bool:
    return char == " " or (
        unicodedata.category(char) not in REFUSED_CATEGORIES and char not in BLANK_LOOKALIKES
    )


def id_rule(max_chars: int, *, also_refused: str = "", normalize: bool = True) -> str:
    """What an id may hold, as error messages and docs say it (`normalize`: see `check_id`)."""
    without = f", without {', '.join(map(repr, also_refused))}" if also_refused else ""
    stored = "NFC-normalized and trimmed" if normalize else "as given (trimmed, not normalized)"
    return (
        f"an id is 1 to {max_chars} letters, digits, marks (accents), punctuation, symbols and "
        f"plain spaces{without}, at least one of them visible, stored {stored}; refused: "
        "control characters (NUL, tab, line breaks), invisible format characters (zero-width "
        "spaces and joiners, a BOM, bidi overrides and isolates), other spaces and line or "
        "paragraph separators, private-use characters, lone surrogates and blank fillers "
        "(U+3164, U+2800, ...)"
    )


def normalized_id(text: str) -> str:
    """`text` NFC-normalized as stored ids are: either spelling of an accented letter (composed
    or decomposed) looks up the same id."""
    return unicodedata.normalize("NFC", text)


def check_id(
    value: str,
    *,
    field: str,
    max_chars: int,
    also_refused: str = "",
    normalize: bool = True,
    as_given: bool = False,
) -> str:
    """`value` as stored: trimmed, NFC-normalized and checked against `id_rule`.

    DataError (a ValueError) names `field` and says what was found (the id escaped, the refused
    character's code point, name and position) and what an id may hold. `also_refused`: more
    characters the caller refuses (the FAQ ids' '#'). `normalize=False`: an id kept as given
    (recs user ids, stored so before this rule) is checked but not NFC-normalized, so composed
    and decomposed spellings stay two ids. `as_given`: an id looked up as another store holds it
    (a catalog item id) is only trimmed and bounded, not normalized or checked.
    """
    text = value.strip()
    if normalize and not as_given:
        text = normalized_id(text)
    shown = _shown(text)
    if not text:
        raise DataError(f"{field!r} must be a non-empty string, found {value[:40]!r}")
    if len(text) > max_chars:
        raise DataError(
            f"{field!r} is {len(text)} characters; the limit is {max_chars}, found {shown}"
        )
    if as_given:
        return text
    rule = id_rule(max_chars, also_refused=also_refused, normalize=normalize)
    for position, char in enumerate(text):
        if char in also_refused or not _allowed(char):
            found = repr(char) if char in also_refused else describe(char)
            raise DataError(f"{field} {shown} holds {found} at position {position}; {rule}")
    if not any(is_visible(char) for char in text):
        raise DataError(f"{field} {_shown(text, show=ascii)} holds nothing visible; {rule}")
    return text


def _shown(text: str, *, show: Callable[[str], str] = repr) -> str:
    """`text` escaped as a Python literal (`ascii`: every non-ASCII character escaped too),
    shortened to `_SHOWN_CHARS` characters."""
    return show(text) if len(text) <= _SHOWN_CHARS else f"{show(text[:_SHOWN_CHARS])}..."
