"""The live alert feed's limits: streams capped under gunicorn, a maximum life with a clean
end, ids Redis would refuse turned away, a Redis that refuses the read ends the stream."""

from __future__ import annotations

import importlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from support.servers import open_raw_get, start_gunicorn

from threefold.apps.alerts.resources import Resources
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.apps.alerts.web import create_app
from threefold.streaming.connections import redis_client

from .test_web import feed_surge

pytestmark = pytest.mark.integration

FEED_API = importlib.import_module("threefold.apps.alerts.web.api")  # `web.api` is the blueprint


@pytest.fixture
def gunicorn_dashboard(redis_url: str, redis_prefix: str) -> Iterator[int]:
    """The dashboard under gunicorn as deployed, with 4 threads: the port."""
    env = {
        **os.environ,
        "GUNICORN_THREADS": "4",
        "GUNICORN_ACCESS_LOG": "0",
        "REDIS_URL": redis_url,
        "THREEFOLD_ALERTS_REDIS_PREFIX": redis_prefix,
        "THREEFOLD_ALERTS_RATE_LIMIT_PER_MINUTE": "0",
    }
    process, port = start_gunicorn(
        "threefold.apps.alerts.web:create_app()", env, ready_path="/openapi.json"
    )
    try:
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_open_feeds_never_take_every_gunicorn_thread(gunicorn_dashboard) -> None:
    port = gunicorn_dashboard
    opened = [open_raw_get(port, "/api/alerts/stream") for _ in range(4)]  # one per thread
    try:
        statuses = [status for _, status, _, _ in opened]
        assert statuses.count("HTTP/1.1 200 OK") == 2  # 4 threads less 2, 2 per client
        _, _, headers, body = next(answer for answer in opened if " 503 " in answer[1])
        assert headers["retry-after"]
        assert b'"error": "streams_full"' in body
        base = f"http://127.0.0.1:{port}"
        for path in ("/api/keys", "/", "/healthz"):
            try:
                with urllib.request.urlopen(base + path, timeout=10) as answer:
                    assert answer.status == 200, path
            except urllib.error.HTTPError as error:  # /healthz: 503 without a consumer
                assert error.code == 503 and path == "/healthz", path
    finally:
        for sock, *_ in opened:
            sock.close()


def _events(body: str) -> list[tuple[str, str]]:
    """(event, data) of each event in an event-stream body."""
    out = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((fields.get("event", "message"), fields["data"]))
    return out


def _read(client, url: str, max_chunks: int = 60) -> tuple[str, bool]:
    """The stream at `url`, read chunk by chunk: (body, whether it ended by itself)."""
    response = client.get(url)
    chunks = iter(response.response)
    read = [next(chunks, b"") for _ in range(max_chunks)]
    response.close()
    return b"".join(read).decode(), read[-1] == b""


@pytest.fixture
def fast_client(config, redis_settings):
    """The dashboard on a Redis client with a 1 s socket timeout: a keepalive every 0.5 s."""
    fast = redis_client(redis_settings, decode_responses=True, socket_timeout=1.0)
    store = RedisStateStore(fast, config.redis_prefix)
    return create_app(config, Resources(settings=config, store=store)).test_client()


def test_a_feed_ends_after_its_life_with_the_id_to_resume_from(
    fast_client, config, resources, monkeypatch
) -> None:
    store = resources.store
    assert isinstance(store, RedisStateStore)
    feed_surge(config, store)
    newest = store.recent_alerts(10)
    monkeypatch.setattr(FEED_API, "FEED_MAX_S", 1)
    body, ended = _read(fast_client, "/api/alerts/stream?since=0")
    assert ended, "the feed did not end by itself"
    events = _events(body)
    assert [name for name, _ in events[:-1]] == ["alert"] * len(newest)
    assert events[-1] == ("end", json.dumps({"resume_from": newest[0][0]}))
    resumed, ended = _read(fast_client, f"/api/alerts/stream?since={newest[0][0]}&timeout=1")
    assert ended and [name for name, _ in _events(resumed)] == ["end"]


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("since=%D9%A1%D9%A2", {}, "since"),  # Arabic-Indic digits
        ("since=%C2%B2", {}, "since"),  # superscript two
        ("since=99999999999999999999999-0", {}, "since"),
        ("since=1-2-3", {}, "since"),
        ("", {"Last-Event-ID": "18446744073709551616-0"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "<script>"}, "Last-Event-ID"),
    ],
)
def test_a_feed_id_redis_would_refuse_is_a_json_400(client, query, headers, field) -> None:
    response = client.get(f"/api/alerts/stream?{query}", headers=headers)
    assert response.status_code == 400
    assert response.is_json and response.get_json()["field"] == field
    assert "stream id like 1714550400000-0" in response.get_json()["message"]


def test_the_largest_feed_id_is_accepted(client) -> None:
    largest = f"{2**64 - 1}-{2**64 - 1}"
    response = client.get(f"/api/alerts/stream?since={largest}&timeout=1", buffered=True)
    assert response.status_code == 200
    assert "redis" not in response.get_data(as_text=True)


def test_a_redis_that_refuses_the_read_ends_the_stream(fast_client, config, redis_client) -> None:
    response = fast_client.get("/api/alerts/stream?timeout=60")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    redis_client.set(f"{config.redis_prefix}feed", "not a stream")  # XREAD: WRONGTYPE
    said = [next(chunks, b"") for _ in range(5)]
    response.close()
    assert b"stream closed" in b"".join(said)
    assert said[-1] == b"", "still retrying"


def test_head_of_the_feed_answers_at_once_and_frees_its_slot(client) -> None:
    response = client.head("/api/alerts/stream")
    assert response.status_code == 200
    assert response.get_data() == b""
    response.close()
    assert client.application.extensions[FEED_API.FEED_SLOTS].in_use() == 0
