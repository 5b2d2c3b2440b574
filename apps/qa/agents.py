"""Agent sign-in: `name:token,name:token` parsed once, tokens kept only as SHA-256 digests."""

from __future__ import annotations

from threefold.core.named_tokens import NamedTokens


class AgentDirectory(NamedTokens):
    """Who an agent token belongs to (THREEFOLD_QA_AGENT_TOKENS)."""

    setting = "agent_tokens"
    variable = "THREEFOLD_QA_AGENT_TOKENS"
    people = "agents"

    def agent_for(self, token: str) -> str | None:
        """The display name of the agent with this token, or None."""
        return self.name_for(token)
