"""Settings from the environment, and the seeded sample-data generator."""

from __future__ import annotations

import csv

import pytest

from threefold.apps.recs.config import DEFAULT_EVENTS, RecsConfig
from threefold.apps.recs.sample_data import generate_events
from threefold.core.errors import ConfigError
from threefold.core.settings import load_settings, reveal
from threefold.streaming.connections import RedisSettings


def test_from_env_reads_prefixed_settings_and_redis_url():
    environ = {
        "THREEFOLD_RECS_ADMIN_TOKEN": "s3cret-admin-token-0042",
        "THREEFOLD_RECS_MAX_K": "50",
        "THREEFOLD_RECS_EXCLUDE_SEEN": "false",
        "THREEFOLD_RECS_ALLOWED_ORIGINS": "http://a.test, http://b.test",
        "THREEFOLD_RECS_DEFAULT_DIVERSITY": "0.3",
        "THREEFOLD_RECS_STATS_REFRESH_SECONDS": "30",
        "REDIS_URL": "redis://example:6379/0",
    }
    config = RecsConfig.from_env(environ=environ)
    redis = load_settings(RedisSettings, "REDIS_", environ)
    assert reveal(config.admin_token) == "s3cret-admin-token-0042"
    assert "s3cret-admin-token-0042" not in repr(config)
    assert config.max_k == 50
    assert config.exclude_seen is False
    assert config.allowed_origins == ("http://a.test", "http://b.test")
    assert config.default_diversity == 0.3
    assert config.stats_refresh_seconds == 30.0
    assert redis.url == "redis://example:6379/0"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"THREEFOLD_RECS_MAX_K": "many"}, "THREEFOLD_RECS_MAX_K must be an integer"),
        ({"THREEFOLD_RECS_EXCLUDE_SEEN": "perhaps"}, "must be true or false"),
        ({"THREEFOLD_RECS_DEFAULT_K": "500"}, r"default_k \(500\) must not exceed max_k"),
        ({"THREEFOLD_RECS_REDIS_PREFIX": "recs"}, "must end with ':'"),
        ({"THREEFOLD_RECS_STATS_REFRESH_SECONDS": "-1"}, "stats_refresh_seconds must be >= 0"),
    ],
)
def test_bad_settings_say_what_is_wrong(environ, message):
    with pytest.raises(ConfigError, match=message):
        RecsConfig.from_env(environ=environ)


def test_shipped_event_log_is_what_the_seeded_generator_writes(catalog):
    with DEFAULT_EVENTS.open(encoding="utf-8") as handle:
        shipped = list(csv.DictReader(handle))
    generated = generate_events(catalog)
    assert [{k: str(v) for k, v in row.items()} for row in generated] == shipped
    assert len({row["user_id"] for row in shipped}) == 80


def test_trusted_proxies_from_env():
    assert RecsConfig.from_env(environ={}).trusted_proxies == 0
    environ = {"THREEFOLD_RECS_TRUSTED_PROXIES": "2"}
    assert RecsConfig.from_env(environ=environ).trusted_proxies == 2


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), ("true", True), ("0", False)]
)
def test_query_precision_is_decided_by_catalog_size_unless_set(raw, expected):
    environ = {} if raw is None else {"THREEFOLD_RECS_QUANTIZE_QUERIES": raw}
    assert RecsConfig.from_env(environ=environ).quantize_queries is expected
