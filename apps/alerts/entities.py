"""Company/ticker extraction: $TICKER cashtags plus a configurable name -> ticker list."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from threefold.core.errors import DataError
from threefold.core.tables import read_records

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w])")
TICKER = re.compile(r"^[A-Z]{1,6}(?:\.[A-Z]{1,2})?$")


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
        self._by_name = alternatives
        if alternatives:
            # Longest first so "Northwind Bank Group" wins over "Northwind".
            ordered = sorted(alternatives, key=len, reverse=True)
            pattern = "|".join(re.escape(name) for name in ordered)
            self._names = re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)
        else:
            self._names = None

    @classmethod
    def from_csv(cls, path: str | Path) -> EntityMatcher:
        """Read `name,ticker,aliases` (aliases separated by '|'; may be empty)."""
        records = read_records(path, required=("name", "ticker"), non_empty=("name", "ticker"))
        companies = []
        for record in records:
            ticker = str(record.values["ticker"]).strip().lstrip("$").upper()
            if not TICKER.match(ticker):
                raise DataError(
                    f"ticker {ticker!r} is not 1-6 letters (optionally .X class suffix)",
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
        """Sorted unique tickers: `known` (from the message) + cashtags + company names."""
        found = {t.upper() for t in known}
        found.update(match.upper() for match in CASHTAG.findall(text))
        if self._names is not None:
            found.update(self._by_name[m.group(0).casefold()] for m in self._names.finditer(text))
        return sorted(found)
