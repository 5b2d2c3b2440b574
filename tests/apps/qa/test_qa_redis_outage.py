"""The QA bot through a Redis outage (a real redis-server, stopped mid-conversation)."""

from __future__ import annotations

import json

import pytest

from threefold.apps.qa.fallback import FallbackSessionStore, RedisFallback
from threefold.apps.qa.redis_sessions import RedisSessionStore
from threefold.apps.qa.sessions import MemorySessionStore, new_id
from threefold.streaming.services import start_redis

pytestmark = pytest.mark.integration


def chat(client, message: str, **extra: object):
    return client.post("/api/chat", json={"message": message, **extra})


def test_chat_answers_statelessly_while_redis_is_down(make_app) -> None:
    redis_service = start_redis()
    try:
        client = make_app(redis_url=redis_service.url).test_client()
        first = chat(client, "Is shipping free?")
        assert first.status_code == 200 and "degraded" not in first.get_json()
        session_id = first.get_json()["session_id"]
    finally:
        redis_service.stop()

    statuses = []
    for message in ["How long does delivery take?", "asdf qwerty", "Can I return shoes?"] * 5:
        response = chat(client, message, session_id=session_id)
        statuses.append(response.status_code)
        assert response.get_json()["degraded"] == "redis unavailable"
    assert statuses == [200] * 15
    fresh = chat(client, "Is shipping free?")
    assert fresh.status_code == 200
    assert fresh.get_json()["faq_id"] == "shipping_cost"
    assert fresh.get_json()["degraded"] == "redis unavailable"
    rated = client.post(
        "/api/feedback",
        json={
            "session_id": fresh.get_json()["session_id"],
            "turn_id": fresh.get_json()["turn_id"],
            "rating": "up",
        },
    )
    assert rated.status_code == 201  # kept in this worker until Redis returns
    assert client.get("/healthz").status_code == 503


def test_bad_data_does_not_open_the_breaker(redis_client, redis_prefix: str) -> None:
    breaker = RedisFallback(retry_s=60)
    redis_store = RedisSessionStore(redis_client, prefix=redis_prefix, ttl_s=60)
    store = FallbackSessionStore(redis_store, MemorySessionStore(ttl_s=60), breaker)
    session_id = new_id()
    redis_client.set(redis_store.key(session_id), b"{not json")
    with pytest.raises(json.JSONDecodeError):
        store.get(session_id)
    assert not breaker.is_open
    created = store.create()
    assert redis_client.exists(redis_store.key(created.id))
