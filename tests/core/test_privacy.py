from __future__ import annotations

import pytest

from threefold.core.privacy import luhn_valid, mask_pii, redact_query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+shop@example.co.uk please", "write to [email] please"),
        ("my card is 4111 1111 1111 1111", "my card is [card]"),
        ("card 4111-1111-1111-1111.", "card [card]."),
        ("ssn 078-05-1120 ok", "ssn [national-id] ok"),
        ("call +1 (415) 555-0134 now", "call [phone] now"),
        ("call 0612345678", "call [phone]"),
    ],
)
def test_personal_data_is_masked(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    ["order 1234 arrived", "returns within 30 days", "size 42, 2024-05-01", "1234567812345678"],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert mask_pii(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_query_strings_lose_tokens_before_logging() -> None:
    assert redact_query("x=1&token=abc&api_key=k&sort=new") == (
        "x=1&token=[redacted]&api_key=[redacted]&sort=new"
    )
    assert redact_query("email=a%40b.co&q=jane@example.com") == "email=a%40b.co&q=[email]"
    assert redact_query("") == ""
