"""Bearer tokens read at start-up: a published placeholder or a short token is refused.

deploy/ once shipped a Secret template whose admin tokens were `replace-with-a-long-random-token`;
applied as is, recs-api accepted that public value as its admin token. Every app reads its tokens
through `core.settings.load_settings`, so the check there covers all of them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from threefold.core.errors import ConfigError
from threefold.core.named_tokens import MIN_TOKEN_CHARS, PLACEHOLDER_TOKENS, NamedTokens
from threefold.core.settings import Secret, load_settings, reveal

PLACEHOLDER = "replace-with-a-long-random-token"  # what deploy/k8s/secret.yaml shipped
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Service:
    admin_token: Secret | None = None
    agent_tokens: Secret | None = None
    max_tokens: int = 512  # not a bearer token: a number


def test_a_long_random_token_is_accepted_and_an_empty_one_disables() -> None:
    token = secrets.token_urlsafe(32)
    settings = load_settings(
        Service, "APP_", {"APP_ADMIN_TOKEN": token, "APP_AGENT_TOKENS": f"ana:{token}x"}
    )
    assert reveal(settings.admin_token) == token
    assert NamedTokens.parse(reveal(settings.agent_tokens)).name_for(f"{token}x") == "ana"
    empty = load_settings(Service, "APP_", {"APP_ADMIN_TOKEN": "", "APP_AGENT_TOKENS": " "})
    assert empty.admin_token is None and empty.agent_tokens is None


def test_the_placeholder_deploy_shipped_is_refused_naming_the_variable_and_the_fix() -> None:
    assert PLACEHOLDER in PLACEHOLDER_TOKENS
    with pytest.raises(ConfigError, match=r"APP_ADMIN_TOKEN.*placeholder") as caught:
        load_settings(Service, "APP_", {"APP_ADMIN_TOKEN": PLACEHOLDER})
    assert GENERATE in str(caught.value)
    assert "unset" in str(caught.value), "say how to switch the feature off instead"


def test_a_placeholder_in_another_case_or_padded_is_refused() -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(Service, "APP_", {"APP_ADMIN_TOKEN": f" {PLACEHOLDER.upper()} "})


def test_a_short_token_is_refused_without_showing_it() -> None:
    short = "s3cret-" + "x" * (MIN_TOKEN_CHARS - 8)
    with pytest.raises(ConfigError, match=f"APP_ADMIN_TOKEN.*at least {MIN_TOKEN_CHARS}") as caught:
        load_settings(Service, "APP_", {"APP_ADMIN_TOKEN": short})
    assert short not in str(caught.value)
    assert GENERATE in str(caught.value)


def test_a_cli_override_is_checked_like_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"APP_ADMIN_TOKEN.*placeholder"):
        load_settings(Service, "APP_", {}, admin_token=PLACEHOLDER)


def test_each_named_token_is_checked_and_its_holder_named() -> None:
    good = secrets.token_urlsafe(24)
    spec = f"ana:{good}, bo:{PLACEHOLDER}"
    with pytest.raises(ConfigError, match=r"APP_AGENT_TOKENS.*'bo'.*placeholder"):
        load_settings(Service, "APP_", {"APP_AGENT_TOKENS": spec})
    with pytest.raises(ConfigError, match=r"APP_AGENT_TOKENS.*'ana'.*at least") as caught:
        load_settings(Service, "APP_", {"APP_AGENT_TOKENS": "ana:tok-ana-1"})
    assert "tok-ana-1" not in str(caught.value)


def test_a_malformed_named_token_list_still_gets_the_format_error() -> None:
    with pytest.raises(ConfigError, match="entry 1 is not 'name:token'"):
        NamedTokens.parse("no-colon-here-at-all")
    settings = load_settings(Service, "APP_", {"APP_AGENT_TOKENS": "no-colon-here-at-all"})
    with pytest.raises(ConfigError, match="not 'name:token'"):
        NamedTokens.parse(reveal(settings.agent_tokens))


def test_settings_that_are_not_tokens_are_left_alone() -> None:
    assert load_settings(Service, "APP_", {"APP_MAX_TOKENS": "8"}).max_tokens == 8


def _qa_config():
    from threefold.apps.qa.config import QAConfig

    return QAConfig


def _recs_config():
    from threefold.apps.recs.config import RecsConfig

    return RecsConfig


def _alerts_config():
    from threefold.apps.alerts.config import AlertsConfig

    return AlertsConfig


@pytest.mark.parametrize(
    ("config", "variable", "value"),
    [
        (_qa_config, "THREEFOLD_QA_ADMIN_TOKEN", PLACEHOLDER),
        (_qa_config, "THREEFOLD_QA_AGENT_TOKENS", f"alice:{PLACEHOLDER}"),
        (_recs_config, "THREEFOLD_RECS_ADMIN_TOKEN", PLACEHOLDER),
        (_alerts_config, "THREEFOLD_ALERTS_ANALYST_TOKENS", "bob:short"),
    ],
)
def test_every_app_refuses_at_start_up(config, variable: str, value: str) -> None:
    """The apps' `from_env` (gunicorn's factories, `threefold serve`, the consumer) refuse."""
    with pytest.raises(ConfigError, match=variable):
        config().from_env({variable: value})


def test_recs_api_does_not_start_with_the_placeholder(monkeypatch) -> None:
    """The reviewer's case: recs-api with the template's env answered 201 to the placeholder."""
    from threefold.apps.recs.web import create_app

    monkeypatch.setenv("THREEFOLD_RECS_ADMIN_TOKEN", PLACEHOLDER)
    with pytest.raises(ConfigError, match=r"THREEFOLD_RECS_ADMIN_TOKEN.*placeholder"):
        create_app()
