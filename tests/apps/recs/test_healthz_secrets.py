"""/healthz never shows the Redis password of REDIS_URL, whatever state Redis is in."""

from __future__ import annotations

import pytest

from threefold.streaming.services import free_port

PASSWORD = "recs-redis-pw-9a4d"

pytestmark = pytest.mark.integration


def test_healthz_with_an_unreachable_redis_shows_no_password(make_app) -> None:
    app = make_app(redis_url=f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "redis://app:***@127.0.0.1" in body
    assert PASSWORD not in body


def test_healthz_is_ok_over_tls_with_an_acl_user(
    embedder, tuned_combiner, tls_redis, redis_prefix
) -> None:
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources
    from threefold.apps.recs.web import create_app

    settings = RecsConfig(redis_prefix=redis_prefix)
    resources = open_resources(
        settings, tls_redis.settings(), encoder=embedder, tuned=tuned_combiner
    )
    response = create_app(settings, resources).test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["redis"] == "up"
