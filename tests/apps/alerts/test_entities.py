from __future__ import annotations

import itertools
import string

import pytest

from threefold.apps.alerts.config import DEFAULT_COMPANIES
from threefold.apps.alerts.entities import MAX_ENTITIES, Company, EntityMatcher
from threefold.apps.alerts.messages import MAX_TEXT_CHARS
from threefold.core.errors import DataError


@pytest.fixture(scope="module")
def matcher() -> EntityMatcher:
    return EntityMatcher.from_csv(DEFAULT_COMPANIES)


def test_cashtags_and_names_are_found(matcher):
    text = "$ORSC rallies while Northwind Bank and helios air slump; $brk.b flat"
    assert matcher.extract(text) == ["BRK.B", "HLX", "NWB", "ORSC"]


def test_names_match_whole_words_only(matcher):
    assert matcher.extract("Redwoodish cars and Marlowe poems") == []
    assert matcher.extract("Redwood's new model") == ["RWM"]


def test_dollar_amounts_are_not_cashtags(matcher):
    assert matcher.extract("profit of $5 billion, up from $3.2bn") == []


def test_entities_given_in_the_message_are_kept():
    assert EntityMatcher([Company("ACME", ["Acme Corp"])]).extract("nothing here", ["zzz"]) == [
        "ZZZ"
    ]


def test_longest_alias_wins():
    matcher = EntityMatcher(
        [Company("NW", ["Northwind"]), Company("NWBG", ["Northwind Bank Group"])]
    )
    assert matcher.extract("Northwind Bank Group shares fall") == ["NWBG"]


def test_bad_ticker_in_company_file_names_line_and_column(tmp_path):
    path = tmp_path / "companies.csv"
    path.write_text("name,ticker,aliases\nAcme,ACME,\nBad Co,not a ticker,\n")
    with pytest.raises(DataError, match=r"line 3, column ticker"):
        EntityMatcher.from_csv(path)


@pytest.mark.parametrize(
    "text",
    ["QUANTİVE SOFTWARE HİT BY BREACH", "quantıve software hit by breach"],
    ids=["dotted-capital-I", "dotless-i"],
)
def test_turkish_i_matches_the_company_without_crashing(matcher, text):
    """The regex matched 'QUANTİVE' case-insensitively but its casefold() ('quanti̇ve') missed
    the lookup: KeyError, the batch retried three times and the headline dead-lettered."""
    assert matcher.extract(text) == ["QNTV"]


def test_a_headline_yields_at_most_max_entities_tickers_the_given_ones_first(matcher):
    """1420 cashtags in one 10 000-character headline made 1420 aggregation keys."""
    names = ("".join(letters) for letters in itertools.product(string.ascii_uppercase, repeat=4))
    text = "Quantive Software: " + " ".join("$" + next(names) for _ in range(1420))
    found = matcher.extract(text[:MAX_TEXT_CHARS], ["ZZZ"])
    assert len(found) == MAX_ENTITIES
    assert {"ZZZ", "QNTV", "AAAA"} <= set(found)  # given, then names, then cashtags in order
    assert found == sorted(found)
