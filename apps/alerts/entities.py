"""Company/ticker extraction: $TICKER cashtags plus a configurable name -> ticker list."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from threefold.core.errors import DataError
from threefold.core.tables import read_records

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w])")
MAX_ENTITIES = 50  # tickers per message: given in `entities` and found in the text together
TICKER = re.compile(r"[A-Z]{1,6}(?:\.[A-Z]{1,2})?")  # use with fullmatch


def as_ticker(text: str) -> str | None:
    """' $brk.b ' -> 'BRK.B'; None for anything else (ASCII letters only: 'ß'.upper() is 'SS')."""
    ticker = text.strip().removeprefix("$").upper()
    return ticker if text.isascii() and TICKER.fullmatch(ticker) else None


@dataclass
class Company:
    """A company the matcher knows: its ticker and the names it is called in headlines."""

    ticker: str
    names: list[str]


class EntityMatcher:
    """Finds tickers in text. Names match whole words, case-insensitively."""

    def __init__(self, companies: Iterable[Company] = ()) -> None:
        self.companies = list(companies)
        alternatives: dict[str, str] = {}
        for company in self.companies:
            for name in company.names:
                alternatives[name.casefold()] = company.ticker
        # Longest first so "Northwind Bank Group" wins over "Northwind". Each name is a group
        # and the group that matched names the ticker: looking the matched text up again
        # (casefold) misses what the regex's own case-insensitivity matched ('QUANTİVE').
        ordered = sorted(alternatives, key=len, reverse=True)
        self._tickers = [alternatives[name] for name in ordered]
        if ordered:
            pattern = "|".join(f"({re.escape(name)})" for name in ordered)
            self._names = re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)
        else:
            self._names = None

    @classmethod
    def from_csv(cls, path: str | Path) -> EntityMatcher:
        """Read `name,ticker,aliases` (aliases separated by '|'; may be empty)."""
        records = read_records(path, required=("name", "ticker"), non_empty=("name", "ticker"))
        companies = []
        for record in records:
            given = str(record.values["ticker"]).strip()
            ticker = as_ticker(given)
            if ticker is None:
                raise DataError(
                    f"ticker {given!r} is not 1-6 letters (optionally .X class suffix)",
                    path=str(path),
                    line=record.line,
                    column="ticker",
                )
            aliases = str(record.values.get("aliases") or "")
            names = [str(record.values["name"]).strip()]
            names += [alias.strip() for alias in aliases.split("|") if alias.strip()]
            companies.append(Company(ticker=ticker, names=names))
        return cls(companies)

    def extract(self, text: str, known: Iterable[str] = ()) -> list[str]:
        """Sorted unique tickers, MAX_ENTITIES at most (each one is an aggregation key): `known`
        (from the message) first, then company names, then cashtags, in the text's order."""
        found: dict[str, None] = {}
        for ticker in self._candidates(text, known):
            found[ticker] = None
            if len(found) == MAX_ENTITIES:
                break
        return sorted(found)

    def _candidates(self, text: str, known: Iterable[str]) -> Iterator[str]:
        yield from (t.upper() for t in known)
        if self._names is not None:
            yield from (self._tickers[m.lastindex - 1] for m in self._names.finditer(text))
        yield from (m.group(1).upper() for m in CASHTAG.finditer(text))
