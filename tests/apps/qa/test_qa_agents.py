"""Agent tokens: parsed from `name:token,...`, looked up by digest, never shown."""

from __future__ import annotations

import pytest

from threefold.apps.qa.agents import AgentDirectory
from threefold.apps.qa.config import QAConfig
from threefold.core.errors import ConfigError


def test_tokens_map_to_display_names() -> None:
    agents = AgentDirectory.parse(" Alice Smith:tok-1 , bob:tok-2,")
    assert agents.names == ["Alice Smith", "bob"]
    assert agents.agent_for("tok-1") == "Alice Smith"
    assert agents.agent_for("tok-2") == "bob"
    assert agents.agent_for("tok-3") is None
    assert "tok-1" not in repr(vars(agents))
    assert not AgentDirectory.parse(None) and not AgentDirectory.parse("")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alice", "entry 1 is not 'name:token' \\(found no colon\\)"),
        ("alice:t1,:t2", "entry 2 is not 'name:token' \\(found an empty name or token\\)"),
        ("alice:t1,alice:t2", "names 'alice' twice"),
        ("alice:t9,bob:t9", "two agents the same token"),
    ],
)
def test_bad_specs_say_what_is_expected(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        AgentDirectory.parse(spec)
    assert "t1" not in str(error.value) and "t9" not in str(error.value)  # tokens never shown


def test_agent_tokens_are_a_secret_setting() -> None:
    settings = QAConfig.from_env(
        {
            "THREEFOLD_QA_AGENT_TOKENS": "alice:very-secret-agent-token",
            "THREEFOLD_QA_AGENT_WAIT_TIMEOUT_S": "30",
        }
    )
    assert settings.agent_wait_timeout_s == 30.0
    shown = repr(settings) + str(settings)
    assert "very-secret-agent-token" not in shown
    with pytest.raises(ConfigError, match="agent_wait_timeout_s must be > 0, found 0"):
        QAConfig(agent_wait_timeout_s=0)
