from __future__ import annotations

import pytest

from threefold.apps.alerts.config import AlertsConfig
from threefold.core.errors import ConfigError


def test_from_env_reads_prefixed_settings_and_service_urls(monkeypatch):
    monkeypatch.setenv("THREEFOLD_ALERTS_WINDOW_SIZE_S", "120")
    monkeypatch.setenv("THREEFOLD_ALERTS_WINDOW_SLIDE_S", "60")
    monkeypatch.setenv("THREEFOLD_ALERTS_Z_THRESHOLD", "3.1")
    monkeypatch.setenv("THREEFOLD_ALERTS_ALLOWED_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("REDIS_URL", "redis://:secret@localhost:6379/0")
    monkeypatch.setenv("THREEFOLD_ALERTS_WEBHOOK_URL", "https://hooks.example/secret")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    config = AlertsConfig.from_env(input_topic="wire", grace_s=None)
    assert (config.window_size_s, config.window_slide_s, config.z_threshold) == (120, 60, 3.1)
    assert config.allowed_origins == ["http://a.example", "http://b.example"]
    assert config.input_topic == "wire" and config.grace_s == 60
    assert config.bootstrap_servers == "localhost:9092"
    public = config.public_dict()
    assert "secret" not in str(public)


def test_tumbling_by_default():
    assert AlertsConfig(window_size_s=600).window_slide_s == 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_size_s": 300, "window_slide_s": 70}, "multiple of window_slide_s"),
        ({"min_volume": 0}, "min_volume must be > 0"),
        ({"prepare_workers": 0}, "prepare_workers must be > 0"),
        ({"quiet_close_s": -1}, "quiet_close_s must be >= 0"),
        ({"ewma_alpha": 0}, "ewma_alpha must be in"),
        ({"scored_topic": "news"}, "must differ"),
        ({"webhook_outbox_max": 0}, "webhook_outbox_max must be > 0"),
        (
            {"webhook_backoff_s": 10, "webhook_max_backoff_s": 1},
            r"webhook_max_backoff_s \(1\) must be >= webhook_backoff_s \(10\)",
        ),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AlertsConfig(**kwargs)


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("THREEFOLD_ALERTS_MIN_VOLUME", "many")
    with pytest.raises(ConfigError, match="THREEFOLD_ALERTS_MIN_VOLUME must be an integer"):
        AlertsConfig.from_env()
