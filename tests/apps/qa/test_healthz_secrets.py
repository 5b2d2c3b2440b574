"""/healthz never shows the Redis password of REDIS_URL, whatever state Redis is in."""

from __future__ import annotations

import pytest

from threefold.streaming.services import free_port

PASSWORD = "qa-redis-pw-3f0c"

pytestmark = pytest.mark.integration


def test_healthz_with_an_unreachable_redis_shows_no_password(make_app) -> None:
    app = make_app(redis_url=f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["redis"] == "unreachable"
    assert PASSWORD not in response.get_data(as_text=True)


def test_the_factory_reads_redis_settings_and_healthz_is_ok_over_tls(
    bot_dir, redis_prefix, tls_redis, monkeypatch
) -> None:
    """REDIS_URL with the ACL user's password in it, REDIS_CA_FILE: create_app reads them."""
    from threefold.apps.qa.config import QAConfig
    from threefold.apps.qa.web import create_app

    password = tls_redis.password_file.read_text().strip()
    url = tls_redis.url.replace("rediss://", f"rediss://{tls_redis.username}:{password}@")
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("REDIS_CA_FILE", str(tls_redis.files.ca))
    app = create_app(QAConfig(bot_dir=str(bot_dir), kb_path=None, redis_prefix=redis_prefix))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["redis"] == "ok"
    assert password not in response.get_data(as_text=True)
