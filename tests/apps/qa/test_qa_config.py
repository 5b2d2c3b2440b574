"""Service settings from THREEFOLD_QA_* variables."""

from __future__ import annotations

import pytest

from threefold.apps.qa.config import SAMPLE_KB, QAConfig
from threefold.core.errors import ConfigError
from threefold.core.settings import load_settings
from threefold.streaming.connections import RedisSettings


def test_from_env_reads_prefixed_variables_and_redis_url() -> None:
    environ = {
        "THREEFOLD_QA_BOT_DIR": "/srv/bot",
        "THREEFOLD_QA_ADMIN_TOKEN": "s3cret-admin-token-0042",
        "THREEFOLD_QA_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "THREEFOLD_QA_THRESHOLD": "0.7",
        "THREEFOLD_QA_RATE_LIMIT_PER_MINUTE": "0",
        "THREEFOLD_QA_SESSION_TTL_S": "60",
        "REDIS_URL": "redis://localhost:6379/2",
    }
    config = QAConfig.from_env(environ=environ)
    assert config.bot_dir == "/srv/bot"
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.threshold == 0.7
    assert config.rate_limit_per_minute is None
    assert config.session_ttl_s == 60
    assert load_settings(RedisSettings, "REDIS_", environ).url == "redis://localhost:6379/2"
    assert config.kb_path == str(SAMPLE_KB)
    assert "s3cret-admin-token-0042" not in repr(config)


def test_empty_kb_path_disables_building_at_start_up() -> None:
    assert QAConfig.from_env(environ={"THREEFOLD_QA_KB_PATH": ""}).kb_path is None


def test_bad_values_are_named() -> None:
    with pytest.raises(
        ConfigError, match="THREEFOLD_QA_SESSION_TTL_S must be an integer, found 'soon'"
    ):
        QAConfig.from_env(environ={"THREEFOLD_QA_SESSION_TTL_S": "soon"})
    with pytest.raises(ConfigError, match=r"threshold must be within \[0, 1\], found 2.0"):
        QAConfig.from_env(environ={"THREEFOLD_QA_THRESHOLD": "2"})


def test_trusted_proxies_from_env() -> None:
    assert QAConfig.from_env(environ={}).trusted_proxies == 0
    assert QAConfig.from_env(environ={"THREEFOLD_QA_TRUSTED_PROXIES": "1"}).trusted_proxies == 1
