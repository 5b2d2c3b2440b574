"""Rate limits shared by workers through a real Redis, with an honest Retry-After."""

from __future__ import annotations

import logging

import pytest
import redis
from flask import Flask, jsonify
from prometheus_client import CollectorRegistry

from threefold.core.rate_limit import SharedRateLimiter, retry_after_seconds
from threefold.core.web import setup_web_app
from threefold.streaming.services import free_port, start_redis


def make_worker(client: object, prefix: str, rate_per_minute: int = 60) -> Flask:
    """One "gunicorn worker": its own app and process-local state, the same Redis."""
    app = Flask(__name__)
    setup_web_app(
        app,
        name="ratetest",
        registry=CollectorRegistry(),
        rate_limit_per_minute=rate_per_minute,
        redis=client,
        redis_prefix=prefix,
    )

    @app.get("/api/ping")
    def ping():
        return jsonify(ok=True)

    return app


@pytest.mark.integration
def test_limit_is_shared_by_workers(redis_client, redis_prefix: str) -> None:
    workers = [make_worker(redis_client, redis_prefix).test_client() for _ in range(2)]
    statuses = [workers[i % 2].get("/api/ping").status_code for i in range(30)]
    # burst 15 (60/min // 4) for the client across both workers, not 15 per worker
    assert statuses.count(200) == 15
    limited = workers[0].get("/api/ping")
    assert limited.status_code == 429
    seconds = int(limited.headers["Retry-After"])
    assert seconds >= 1 and limited.get_json()["retry_after"] == seconds


@pytest.mark.integration
def test_retry_after_is_the_time_until_a_token(redis_client, redis_prefix: str) -> None:
    limiter = SharedRateLimiter(redis_client, prefix=redis_prefix, rate_per_minute=6, burst=1)
    assert limiter.acquire("a") == 0
    wait = limiter.acquire("a")
    assert 9.0 < wait <= 10.0  # 6 per minute: the next token in 10 s
    assert retry_after_seconds(wait) == 10
    assert limiter.acquire("b") == 0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after_seconds(0.01) == 1
    assert retry_after_seconds(1.2) == 2


def test_redis_down_falls_back_to_per_process_limits(caplog) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    client = make_worker(dead, "test:dead:").test_client()
    with caplog.at_level(logging.WARNING):
        statuses = [client.get("/api/ping").status_code for _ in range(20)]
    assert statuses.count(200) == 15 and statuses[-1] == 429
    assert "per-process limits" in caplog.text


@pytest.mark.integration
def test_a_redis_that_refuses_writes_leaves_limits_per_process_and_errors_503(caplog) -> None:
    """Redis out of memory (noeviction) or read-only answers, but refuses the limiter's
    script: requests keep being served under per-process limits; a view's own refused write
    is a 503 that says so, never a 500."""
    service = start_redis()
    client = redis.Redis.from_url(service.url)
    try:
        app = make_worker(client, "oom:")

        @app.post("/api/write")
        def write():
            client.set("oom:key", "x" * 1000)
            return jsonify(ok=True)

        client.config_set("maxmemory", "1")
        client.config_set("maxmemory-policy", "noeviction")
        http = app.test_client()
        with caplog.at_level(logging.WARNING):
            assert http.get("/api/ping").status_code == 200
            assert http.get("/api/nope").status_code == 404
            refused = http.post("/api/write")
        assert refused.status_code == 503
        assert refused.get_json()["error"] == "redis_unavailable"
        assert "memory" in refused.get_json()["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "per-process limits" in caplog.text
    finally:
        client.close()
        service.stop()
