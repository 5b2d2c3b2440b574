"""Agent sign-in: `name:token,name:token` parsed once, tokens kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac

from threefold.core.errors import ConfigError


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AgentDirectory:
    """Who an agent token belongs to; the tokens themselves are never stored or printed."""

    def __init__(self, agents: dict[str, str]) -> None:
        self._digests = [(_digest(token), name) for name, token in agents.items()]

    @classmethod
    def parse(cls, spec: str | None) -> AgentDirectory:
        """From THREEFOLD_QA_AGENT_TOKENS (`name:token,...`); empty or None = no agents."""
        agents: dict[str, str] = {}
        for position, item in enumerate((spec or "").split(","), start=1):
            if not item.strip():
                continue
            name, sep, token = item.partition(":")
            name, token = name.strip(), token.strip()
            if not sep or not name or not token:
                raise ConfigError(
                    f"agent_tokens entry {position} is not 'name:token' (found "
                    f"{'no colon' if not sep else 'an empty name or token'}); expected "
                    "THREEFOLD_QA_AGENT_TOKENS=alice:TOKEN1,bob:TOKEN2"
                )
            if name in agents:
                raise ConfigError(f"agent_tokens names {name!r} twice; give each agent one token")
            agents[name] = token
        if len({_digest(t) for t in agents.values()}) != len(agents):
            raise ConfigError("agent_tokens gives two agents the same token; make each unique")
        return cls(agents)

    def __bool__(self) -> bool:
        return bool(self._digests)

    @property
    def names(self) -> list[str]:
        return sorted(name for _, name in self._digests)

    def agent_for(self, token: str) -> str | None:
        """The display name of the agent with this token, or None."""
        digest = _digest(token)
        found = None
        for known, name in self._digests:
            if hmac.compare_digest(known, digest):
                found = name
        return found
