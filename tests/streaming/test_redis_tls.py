"""Each app's real Redis stores over rediss:// (certificate verified) as an ACL user.

The server is Debian's redis-server with certificates made by openssl at test time
(tests/support/tls.py); the password reaches the client only through REDIS_PASSWORD_FILE.
"""

from __future__ import annotations

import uuid

import pytest

from threefold.core.errors import ServiceError
from threefold.core.settings import load_settings
from threefold.streaming.connections import RedisSettings, redis_client

pytestmark = pytest.mark.integration


def _prefix() -> str:
    return f"test:tls:{uuid.uuid4().hex[:8]}:"


def test_redis_settings_from_the_environment_connect_with_tls_and_acl(tls_redis) -> None:
    env = {
        "REDIS_URL": tls_redis.url,
        "REDIS_USERNAME": tls_redis.username,
        "REDIS_PASSWORD_FILE": str(tls_redis.password_file),
        "REDIS_CA_FILE": str(tls_redis.files.ca),
    }
    settings = load_settings(RedisSettings, "REDIS_", env)
    assert settings.check_hostname is True
    client = redis_client(settings, decode_responses=True)
    try:
        assert client.acl_whoami() == tls_redis.username
        assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    finally:
        client.close()


def test_qa_sessions_work_over_tls(tls_redis) -> None:
    from threefold.apps.qa.redis_sessions import RedisSessionStore

    client = redis_client(tls_redis.settings(), socket_timeout=5)
    try:
        store = RedisSessionStore(client, prefix=_prefix(), ttl_s=60)
        session = store.create()
        store.save(session)
        assert store.get(session.id) is not None
    finally:
        client.close()


def test_recs_caches_work_over_tls(tls_redis) -> None:
    from prometheus_client import CollectorRegistry

    from threefold.apps.recs.metrics import RecsMetrics
    from threefold.apps.recs.redis_state import RedisState

    state = RedisState(
        tls_redis.settings(), prefix=_prefix(), metrics=RecsMetrics(CollectorRegistry())
    )
    assert state.put_recs("u1", "a", {"items": ["i1", "i2"]}) is True
    assert state.get_recs("u1", "a") == {"items": ["i1", "i2"]}
    assert state.available


def test_alerts_window_state_works_over_tls(tls_redis) -> None:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_state_store
    from threefold.apps.alerts.windows import Entry

    store = open_state_store(AlertsConfig(redis_prefix=_prefix()), tls_redis.settings())
    entries = [Entry("QNTV", 0, 300, f"m{i}", "negative", f"headline {i}") for i in range(3)]
    store.add_entries(entries, max_examples=2)
    assert store.advance_watermark({"0": 400.0}) == 400.0
    [counts] = store.open_windows("QNTV")
    assert (counts.total, counts.negative) == (3, 3)


def test_a_wrong_ca_fails_with_an_error_naming_redis_ca_file(tls_redis) -> None:
    import redis

    settings = tls_redis.settings(ca_file=tls_redis.files.other_ca)
    client = redis_client(settings, socket_timeout=5)
    try:
        with pytest.raises(
            ServiceError, match=r"cannot verify the TLS certificate.*REDIS_CA_FILE="
        ):
            client.ping()
        with pytest.raises(redis.ConnectionError):  # so apps that degrade on Redis errors still do
            client.ping()
    finally:
        client.close()


def test_a_wrong_password_is_refused_without_showing_it(tls_redis, tmp_path) -> None:
    import redis

    wrong = tmp_path / "password"
    wrong.write_text("not-the-password-5b1f\n")
    client = redis_client(tls_redis.settings(password_file=wrong), socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError) as caught:
            client.ping()
        assert "not-the-password-5b1f" not in str(caught.value)
    finally:
        client.close()
