"""Personal data masking: e-mail addresses, phone numbers, card numbers and national ids.

`mask_pii(text)` replaces each with a placeholder such as `[email]`; apply it to anything a
customer typed before it is stored or logged.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.ASCII)
CARD_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
US_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,}\d(?!\w)")
PHONE_DIGITS = range(7, 16)  # E.164 numbers have at most 15 digits
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check that card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if luhn_valid(digits) else match.group()


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if len(digits) not in PHONE_DIGITS or ISO_DATE.fullmatch(match.group()):
        return match.group()
    return "[phone]"


def mask_pii(text: str) -> str:
    """`text` with e-mails, card numbers (Luhn), US SSNs and phone numbers replaced."""
    text = EMAIL.sub("[email]", text)
    text = CARD_CANDIDATE.sub(_mask_card, text)
    text = US_SSN.sub("[national-id]", text)
    return PHONE.sub(_mask_phone, text)


SECRET_PARAM = re.compile(r"token|secret|passw|api[_-]?key|auth|signature|session", re.IGNORECASE)


def redact_query(query: str) -> str:
    """A query string fit for an access log: secret-looking parameters and personal data hidden."""
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        pairs.append(f"{name}{sep}{'[redacted]' if SECRET_PARAM.search(name) else mask_pii(value)}")
    return "&".join(pairs)
