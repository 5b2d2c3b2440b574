"""Bearer tokens: `name:token,name:token` parsed once, digests only; weak ones refused.

The QA agent console (THREEFOLD_QA_AGENT_TOKENS) and the alerts analysts
(THREEFOLD_ALERTS_ANALYST_TOKENS) use `NamedTokens`; the tokens themselves are never stored or
printed. `check_token_setting` refuses, at start-up, a token anyone could know or guess: a
placeholder published in deploy/ or the docs, or one shorter than `MIN_TOKEN_CHARS`
(`core.settings.load_settings` runs it on every `*_token` / `*_tokens` secret it reads).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

from threefold.core.errors import ConfigError

MIN_TOKEN_CHARS = 16  # `secrets.token_urlsafe(12)`, what `threefold demo` makes, has 16
# Example values deploy/ has shipped: public, so never anybody's secret (a cluster that applied
# the old Secret template still holds the first one).
PLACEHOLDER_TOKENS = frozenset({"replace-with-a-long-random-token"})
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _entries(spec: str) -> Iterator[tuple[int, str, str, str]]:
    """(position, name, colon, token) of each non-blank `name:token` item, stripped."""
    for position, item in enumerate(spec.split(","), start=1):
        if item.strip():
            name, sep, token = item.partition(":")
            yield position, name.strip(), sep, token.strip()


def check_token(token: str, variable: str, holder: str | None = None) -> None:
    """ConfigError unless `token` (from `variable`, held by `holder`) is fit to guard an API:
    not a published placeholder, at least MIN_TOKEN_CHARS long. It is never shown."""
    whose = f"the token of {holder!r}" if holder else "the token"
    if token.strip().lower() in PLACEHOLDER_TOKENS:
        problem = f"{whose} is a placeholder published with threefold, which anyone can read"
    elif len(token) < MIN_TOKEN_CHARS:
        problem = f"{whose} has {len(token)} characters; a token needs at least {MIN_TOKEN_CHARS}"
    else:
        return
    raise ConfigError(
        f"{variable}: {problem}. Fix: set a long random one, e.g. the output of "
        f"`{GENERATE_TOKEN}`, or leave {variable} unset to switch off what it guards"
    )


def check_token_setting(field: str, value: str, variable: str) -> None:
    """Check a setting's tokens: a `*_token` field holds one, a `*_tokens` field
    `name:token,...` (a malformed list is left to `NamedTokens.parse`); others pass."""
    if field.endswith("_token") and value:
        check_token(value, variable)
    elif field.endswith("_tokens"):
        for _, name, sep, token in _entries(value):
            if sep and name and token:
                check_token(token, variable, name)


class NamedTokens:
    """Who a bearer token belongs to. Subclasses name the setting and the people in errors."""

    setting = "agent_tokens"
    variable = "THREEFOLD_QA_AGENT_TOKENS"
    people = "agents"

    def __init__(self, tokens: dict[str, str]) -> None:
        self._digests = [(_digest(token), name) for name, token in tokens.items()]

    @classmethod
    def parse(cls, spec: str | None) -> NamedTokens:
        """From `name:token,...`; empty or None = nobody may sign in."""
        tokens: dict[str, str] = {}
        for position, name, sep, token in _entries(spec or ""):
            if not sep or not name or not token:
                raise ConfigError(
                    f"{cls.setting} entry {position} is not 'name:token' (found "
                    f"{'no colon' if not sep else 'an empty name or token'}); expected "
                    f"{cls.variable}=alice:TOKEN1,bob:TOKEN2"
                )
            if name in tokens:
                raise ConfigError(f"{cls.setting} names {name!r} twice; give each one token")
            tokens[name] = token
        if len({_digest(t) for t in tokens.values()}) != len(tokens):
            raise ConfigError(
                f"{cls.setting} gives two {cls.people} the same token; make each unique"
            )
        return cls(tokens)

    def __bool__(self) -> bool:
        return bool(self._digests)

    @property
    def names(self) -> list[str]:
        return sorted(name for _, name in self._digests)

    def name_for(self, token: str) -> str | None:
        """The display name of whoever holds this token, or None."""
        digest = _digest(token)
        found = None
        for known, name in self._digests:
            if hmac.compare_digest(known, digest):
                found = name
        return found
