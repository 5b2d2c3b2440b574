"""The hub's settings: validated base URLs, read from THREEFOLD_HUB_*."""

from __future__ import annotations

import pytest

from threefold.apps.demo.config import HUB_ENV_PREFIX, HubConfig
from threefold.core.errors import ConfigError
from threefold.core.settings import load_settings


def test_config_rejects_urls_that_are_not_http() -> None:
    with pytest.raises(ConfigError, match=r"qa_url must be an http\(s\) base URL.*'bot:8000'"):
        HubConfig(qa_url="bot:8000")


def test_config_from_environment() -> None:
    config = load_settings(
        HubConfig, HUB_ENV_PREFIX, environ={"THREEFOLD_HUB_RECS_URL": "http://recs.internal:80/"}
    )
    assert config.recs_url == "http://recs.internal:80"
    assert config.qa_url == HubConfig().qa_url
