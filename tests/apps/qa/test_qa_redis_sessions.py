"""Session state in the real embedded Redis."""

from __future__ import annotations

import time

import pytest

from threefold.apps.qa.redis_sessions import RedisSessionStore
from threefold.apps.qa.sessions import Turn

pytestmark = pytest.mark.integration


def test_session_round_trip_with_ttl_and_turn_cap(redis_client, redis_prefix: str) -> None:
    store = RedisSessionStore(redis_client, prefix=redis_prefix, ttl_s=300, max_turns=4)
    session = store.create()
    for i in range(6):
        session.turns.append(Turn(turn_id=f"t{i}", role="user", text=f"message {i}", ts=float(i)))
    session.failures = 1
    store.save(session)
    again = store.get(session.id)
    assert again is not None
    assert [t.text for t in again.turns] == ["message 2", "message 3", "message 4", "message 5"]
    assert again.failures == 1
    assert 0 < redis_client.ttl(store.key(session.id)) <= 300
    assert store.get("0" * 32) is None
    assert store.get("not-an-id") is None


def test_expired_session_is_gone(redis_client, redis_prefix: str) -> None:
    store = RedisSessionStore(redis_client, prefix=redis_prefix, ttl_s=1)
    session = store.create()
    deadline = time.monotonic() + 10
    while store.get(session.id) is not None:
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(0.2)
