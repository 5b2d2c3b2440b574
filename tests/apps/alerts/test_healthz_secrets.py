"""/healthz never shows the Redis password of REDIS_URL, whatever state Redis is in."""

from __future__ import annotations

import pytest
from support.alerts_setup import heartbeat

from threefold.streaming.services import free_port

PASSWORD = "alerts-redis-pw-c27e"

pytestmark = pytest.mark.integration


def test_healthz_with_an_unreachable_redis_shows_no_password(monkeypatch) -> None:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.web import create_app

    monkeypatch.setenv("REDIS_URL", f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0")
    response = create_app(AlertsConfig()).test_client().get("/healthz")
    assert response.status_code == 503
    assert PASSWORD not in response.get_data(as_text=True)


def test_the_factory_reads_redis_settings_and_healthz_is_ok_over_tls(
    tls_redis, redis_prefix, monkeypatch
) -> None:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import EXTENSION
    from threefold.apps.alerts.web import create_app

    monkeypatch.setenv("REDIS_URL", tls_redis.url)
    monkeypatch.setenv("REDIS_USERNAME", tls_redis.username)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tls_redis.password_file))
    monkeypatch.setenv("REDIS_CA_FILE", str(tls_redis.files.ca))
    app = create_app(AlertsConfig(redis_prefix=redis_prefix))
    app.extensions[EXTENSION].store.write_heartbeat("host:1:0123abcd", heartbeat())
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    password = tls_redis.password_file.read_text().strip()
    assert password not in response.get_data(as_text=True)
