"""People signing in with a bearer token: `name:token,name:token` parsed once, digests only.

The QA agent console (THREEFOLD_QA_AGENT_TOKENS) and the alerts analysts
(THREEFOLD_ALERTS_ANALYST_TOKENS) use it; the tokens themselves are never stored or printed.
"""

from __future__ import annotations

import hashlib
import hmac

from threefold.core.errors import ConfigError


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


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
        for position, item in enumerate((spec or "").split(","), start=1):
            if not item.strip():
                continue
            name, sep, token = item.partition(":")
            name, token = name.strip(), token.strip()
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
