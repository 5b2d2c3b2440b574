"""Shared Flask plumbing: every error path answers JSON, metrics, CORS, token, rate limit."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask, g, jsonify
from prometheus_client import CollectorRegistry
from redis import exceptions as redis_errors

from threefold.core.named_tokens import NamedTokens
from threefold.core.web import (
    ApiError,
    JsonLogFormatter,
    TokenBucketLimiter,
    bearer_token_required,
    named_token_required,
    read_json_body,
    require_fields,
    setup_web_app,
)


def make_app(**kwargs) -> Flask:
    app = Flask(__name__)
    app.config["ADMIN_TOKEN"] = "s3cret"
    setup_web_app(app, name="webtest", registry=CollectorRegistry(), **kwargs)

    @app.post("/api/echo")
    def echo():
        body = read_json_body(max_bytes=200)
        require_fields(body, {"message": str, "k": int})
        return jsonify(body)

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/api/admin")
    @bearer_token_required("ADMIN_TOKEN")
    def admin():
        return jsonify(ok=True)

    return app


@pytest.fixture
def client():
    return make_app(allowed_origins=["https://shop.example"]).test_client()


def test_valid_body_round_trips(client) -> None:
    response = client.post("/api/echo", json={"message": "hi", "k": 3})
    assert response.status_code == 200
    assert response.get_json() == {"message": "hi", "k": 3}


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"data": "not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "[1, 2]", "content_type": "application/json"}, 400, "expected a JSON object"),
        ({"data": "message=hi", "content_type": "text/plain"}, 415, "application/json"),
        ({"json": {"k": 1}}, 400, "missing field 'message'"),
        ({"json": {"message": "hi", "k": "3"}}, 400, "must be int, found str"),
        ({"json": {"message": "hi", "k": True}}, 400, "must be int, found bool"),
        ({"json": {"message": "x" * 500, "k": 1}}, 413, "limit is 200"),
    ],
)
def test_bad_bodies_get_json_4xx(client, kwargs, status, needle) -> None:
    response = client.post("/api/echo", **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert needle in response.get_json()["message"]


def test_unknown_route_and_method_are_json(client) -> None:
    assert client.get("/nope").get_json()["error"] == "not_found"
    response = client.get("/api/echo")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"


def test_unexpected_exception_hides_internals(client, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text


def test_bearer_token(client) -> None:
    assert client.get("/api/admin").status_code == 401
    wrong = client.get("/api/admin", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = client.get("/api/admin", headers={"Authorization": "Bearer s3cret"})
    assert right.get_json() == {"ok": True}


def test_admin_disabled_without_token() -> None:
    app = make_app()
    app.config["ADMIN_TOKEN"] = ""
    response = app.test_client().get("/api/admin", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert "ADMIN_TOKEN" in response.get_json()["message"]
    assert "Retry-After" not in response.headers, "only configuration enables it: no retry"


def test_people_tokens_disabled_is_a_503_without_retry_after() -> None:
    app = make_app()

    @app.get("/api/agent")
    @named_token_required(
        lambda: NamedTokens({}), person="agent", disabled="set AGENTS", code="disabled"
    )
    def agent():
        return jsonify(agent=g.signed_in)

    response = app.test_client().get("/api/agent", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.get_json() == {"error": "disabled", "message": "set AGENTS"}
    assert "Retry-After" not in response.headers


def test_cors_only_for_configured_origins(client) -> None:
    allowed = client.get("/nope", headers={"Origin": "https://shop.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    denied = client.get("/nope", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    preflight = client.options(
        "/api/echo",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_rate_limit_answers_429_with_retry_after() -> None:
    client = make_app(rate_limit_per_minute=60).test_client()
    statuses = [
        client.post("/api/echo", json={"message": "a", "k": 1}).status_code for _ in range(30)
    ]
    assert statuses[0] == 200
    assert 429 in statuses
    limited = client.post("/api/echo", json={"message": "a", "k": 1})
    assert limited.status_code == 429
    assert limited.get_json()["retry_after"] > 0
    assert client.get("/metrics").status_code == 200  # not under /api/: never limited


def test_metrics_count_requests(client) -> None:
    client.post("/api/echo", json={"message": "hi", "k": 1})
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert 'http_requests_total{endpoint="/api/echo",method="POST",status="200"} 1.0' in text
    assert response.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"


def test_token_bucket_refills() -> None:
    limiter = TokenBucketLimiter(rate_per_minute=60, burst=2)
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0


def test_api_error_payload_and_json_log_line() -> None:
    error = ApiError(404, "no such FAQ", faq_id="x1")
    assert json.loads(error.to_response().get_data()) == {
        "error": "not_found",
        "message": "no such FAQ",
        "faq_id": "x1",
    }
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello %s", ("w",), None)
    record.fields = {"status": 200}
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "hello w" and line["status"] == 200


def test_forwarded_for_is_trusted_only_behind_configured_proxies() -> None:
    spoofing = make_app(rate_limit_per_minute=4).test_client()
    codes = [
        spoofing.post(
            "/api/echo", json={"message": "a", "k": 1}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
        ).status_code
        for i in range(10)
    ]
    assert 429 in codes  # a fresh X-Forwarded-For per request does not escape the limit
    proxied = make_app(rate_limit_per_minute=4, trusted_proxies=1).test_client()
    codes = [
        proxied.post(
            "/api/echo", json={"message": "a", "k": 1}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
        ).status_code
        for i in range(10)
    ]
    assert codes == [200] * 10  # behind a trusted proxy each forwarded client has its own bucket


def _hostile_app() -> Flask:
    app = Flask(__name__)
    setup_web_app(app, name="hostile", registry=CollectorRegistry())

    @app.post("/api/any")
    def any_body():
        return jsonify(keys=sorted(read_json_body(max_bytes=20_000)))

    return app


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('{"a": ' + "[" * 1000 + "]" * 1000 + "}", "nested"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels"),
        ('{"user_id": "\\ud800"}', "not valid Unicode at $.user_id"),
        ('{"x": NaN}', "NaN is not a number JSON allows"),
        ('{"x": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"x": 1e999}', "1e999 is out of range"),
    ],
)
def test_hostile_json_is_a_400_that_says_why(raw: str, needle: str) -> None:
    response = (
        _hostile_app().test_client().post("/api/any", data=raw, content_type="application/json")
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "bad_request"
    assert needle in body["message"]


def test_json_nested_within_the_limit_is_accepted() -> None:
    raw = '{"a": ' + "[" * 30 + "]" * 30 + "}"
    response = (
        _hostile_app().test_client().post("/api/any", data=raw, content_type="application/json")
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "status"), [("/nope", 404), ("/api/echo", 405), ("/api/admin", 401)]
)
def test_head_errors_are_json(client, path: str, status: int) -> None:
    response = client.head(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"  # HEAD carries no body, only its type


def test_rate_limited_request_says_when_to_retry_in_whole_seconds() -> None:
    client = make_app(rate_limit_per_minute=60).test_client()
    responses = [client.post("/api/echo", json={"message": "a", "k": 1}) for _ in range(20)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    for response in limited:
        seconds = int(response.headers["Retry-After"])
        assert seconds >= 1 and response.get_json()["retry_after"] == seconds


@pytest.mark.parametrize("path", ["/api/echo", "/nope", "/metrics"])
def test_every_answer_forbids_sniffing_and_framing(client, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_what_a_token_unlocked_is_not_cached(client) -> None:
    unlocked = client.get("/api/admin", headers={"Authorization": "Bearer s3cret"})
    assert unlocked.status_code == 200 and unlocked.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/api/echo").headers


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (redis_errors.ConnectionError("Connection refused"), 503),
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), 503),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), 503),
        (
            redis_errors.ResponseError(
                "Error running script (call to f_1): @user_script:12: @user_script: 12: "
                "-OOM command not allowed when used memory > 'maxmemory'."
            ),
            503,
        ),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong"), 500),
        (
            redis_errors.ResponseError(
                "Error running script: @user_script:3: attempt to compare nil"
            ),
            500,
        ),
        (redis_errors.DataError("Invalid input of type: 'NoneType'"), 500),
    ],
    ids=["unreachable", "oom", "read-only", "oom-in-a-script", "wrongtype", "lua-bug", "data"],
)
def test_redis_down_is_a_503_and_a_redis_bug_a_500(error, status: int, caplog) -> None:
    app = make_app()

    @app.get("/api/redis")
    def fails():
        raise error

    with caplog.at_level(logging.WARNING):
        response = app.test_client().get("/api/redis")
    assert response.status_code == status
    body = response.get_json()
    if status == 503:
        assert body["error"] == "redis_unavailable" and response.headers["Retry-After"]
        assert "user_script" not in body["message"]
    else:
        assert body == {
            "error": "internal_error",
            "message": "internal error; the server log has the details",
        }
        assert "Traceback" in caplog.text
