"""The one rule for the characters an id may hold (`threefold.core.ids`)."""

from __future__ import annotations

import pytest

from threefold.core.errors import DataError
from threefold.core.ids import check_id, describe, id_rule, is_visible, normalized_id

SHAKING_FACE = "\U0001fae8"  # an emoji of Unicode 15: unassigned in Python 3.11's Unicode 14


def test_an_id_is_stored_stripped_and_nfc_normalized() -> None:
    assert check_id("  Jose\u0301 ", field="user_id", max_chars=128) == "Jos\u00e9"
    assert normalized_id("cafe\u0301 ") == "caf\u00e9 "  # a lookup key: normalized, not trimmed


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("nul\x00id", "U+0000 (a control character) at position 3"),
        ("tab\tid", "U+0009 (a control character)"),
        ("zw\u200bid", "U+200B ZERO WIDTH SPACE (an invisible format character) at position 2"),
        ("ann\u200d", "U+200D ZERO WIDTH JOINER (an invisible format character)"),
        ("\u202eevil", "U+202E RIGHT-TO-LEFT OVERRIDE (an invisible format character)"),
        ("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE (an invisible format character)"),
        ("\ufeffbom", "U+FEFF ZERO WIDTH NO-BREAK SPACE (an invisible format character)"),
        ("nb\u00a0sp", "U+00A0 NO-BREAK SPACE (a space other than U+0020)"),
        ("line\u2028sep", "U+2028 LINE SEPARATOR (a line separator)"),
        ("para\u2029sep", "U+2029 PARAGRAPH SEPARATOR (a paragraph separator)"),
        ("a\ue000", "U+E000 (a private-use character)"),
        ("a\ud800", "U+D800 (a lone surrogate)"),
        ("\u3164", "U+3164 HANGUL FILLER (a blank filler)"),
        ("a\u2800b", "U+2800 BRAILLE PATTERN BLANK (a blank filler)"),
        ("a\u034fb", "U+034F COMBINING GRAPHEME JOINER (a blank filler)"),
    ],
)
def test_refused_characters_are_named_with_code_point_and_position(value: str, found: str) -> None:
    with pytest.raises(DataError) as raised:
        check_id(value, field="user_id", max_chars=128)
    message = str(raised.value)
    assert found in message
    assert f"user_id {value.strip()!r} holds" in message  # the id as found, escaped
    assert message.endswith(id_rule(128))  # and what an id may hold


def test_an_unassigned_code_point_is_allowed_as_a_newer_emoji() -> None:
    assert check_id(f"ann {SHAKING_FACE}", field="user_id", max_chars=128) == f"ann {SHAKING_FACE}"


def test_an_id_needs_a_visible_character() -> None:
    with pytest.raises(DataError, match=r"id '\\u0301\\u0301' holds nothing visible; an id is"):
        check_id("\u0301\u0301", field="id", max_chars=128)
    assert check_id("e\u0301", field="id", max_chars=128) == "\u00e9"


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_an_empty_id_is_refused(value: str) -> None:
    with pytest.raises(DataError, match="'item_id' must be a non-empty string, found"):
        check_id(value, field="item_id", max_chars=128)


def test_the_length_limit_counts_the_stored_id() -> None:
    decomposed = "e\u0301" * 5  # 10 characters given, 5 stored
    assert check_id(decomposed, field="id", max_chars=5) == "\u00e9" * 5
    with pytest.raises(DataError, match="'id' is 6 characters; the limit is 5, found 'uuuuuu'"):
        check_id(" uuuuuu ", field="id", max_chars=5)


def test_an_app_may_refuse_more_characters() -> None:
    with pytest.raises(DataError, match=r"id 'a#1' holds '#' at position 1; .* without '#'"):
        check_id("a#1", field="id", max_chars=128, also_refused="#")
    assert check_id("a#1", field="id", max_chars=128) == "a#1"


def test_an_id_as_given_is_only_stripped_and_bounded() -> None:
    """An id looked up as another store holds it (a catalog item id) is not normalized."""
    assert check_id(" cafe\u0301 ", field="item_id", max_chars=8, as_given=True) == "cafe\u0301"
    assert check_id("a\u202eb", field="item_id", max_chars=8, as_given=True) == "a\u202eb"
    with pytest.raises(DataError, match="'item_id' is 9 characters; the limit is 8"):
        check_id("cafe\u0301xxxx", field="item_id", max_chars=8, as_given=True)  # NFC: 8


def test_an_id_kept_as_given_is_checked_but_not_normalized() -> None:
    """Ids stored as given before the rule (recs user ids): either spelling stays its own id."""
    assert check_id(" Jose\u0301 ", field="user_id", max_chars=128, normalize=False) == "Jose\u0301"
    assert check_id("Jos\u00e9", field="user_id", max_chars=128, normalize=False) == "Jos\u00e9"
    with pytest.raises(DataError) as raised:
        check_id("nb\u00a0sp", field="user_id", max_chars=128, normalize=False)
    assert "U+00A0 NO-BREAK SPACE (a space other than U+0020) at position 2" in str(raised.value)
    assert str(raised.value).endswith(id_rule(128, normalize=False))
    assert "stored as given (trimmed, not normalized)" in id_rule(128, normalize=False)
    with pytest.raises(DataError, match="holds nothing visible; an id is"):
        check_id("\u0301\u0301", field="user_id", max_chars=128, normalize=False)
    with pytest.raises(DataError, match="'user_id' is 10 characters; the limit is 5"):
        check_id("e\u0301" * 5, field="user_id", max_chars=5, normalize=False)  # NFC would be 5


def test_a_long_id_is_shown_shortened() -> None:
    with pytest.raises(DataError) as raised:
        check_id("x" * 100 + "\x00", field="id", max_chars=128)
    assert f"{'x' * 60!r}... holds U+0000" in str(raised.value)


def test_describe_and_is_visible() -> None:
    assert describe("\u200b") == "U+200B ZERO WIDTH SPACE (an invisible format character)"
    assert describe("\x07") == "U+0007 (a control character)"
    assert describe(SHAKING_FACE) == "U+1FAE8 (an unassigned code point)"
    assert all(is_visible(char) for char in "a\u00e91.!$\u20ac\u4e2d")
    assert not any(is_visible(char) for char in " \u00a0\u0301\u200b\x00\u3164\u2800")


def test_the_rule_names_the_limit_and_the_extra_refusals() -> None:
    assert id_rule(64).startswith("an id is 1 to 64 letters, digits, marks")
    assert "without '#'" in id_rule(128, also_refused="#")
    assert "without" not in id_rule(128)
    assert "stored NFC-normalized and trimmed; refused:" in id_rule(128)
