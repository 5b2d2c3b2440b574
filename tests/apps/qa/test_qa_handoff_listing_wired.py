"""The agents' queue over HTTP on the real embedded Redis: pages of ended conversations and the
queue-length gauge, which leaves out customers who have gone."""

from __future__ import annotations

import pytest

from threefold.apps.qa.redis_sessions import RedisSessionStore

pytestmark = pytest.mark.integration
ALICE = {"Authorization": "Bearer tok-alice-1"}


def hand_off(client) -> str:
    reply = client.post("/api/chat", json={"message": "Can I talk to a real person please?"})
    assert reply.get_json()["handoff"] is True
    return reply.get_json()["session_id"]


def queue_length(client) -> float:
    metrics = client.get("/metrics").get_data(as_text=True)
    (line,) = [m for m in metrics.splitlines() if m.startswith("qa_agent_queue_length ")]
    return float(line.split()[1])


def test_ended_pages_and_the_queue_length_on_redis(make_app, redis_client, redis_prefix) -> None:
    app = make_app(agent_tokens="alice:tok-alice-1")
    closed = []
    for _ in range(3):
        session_id = hand_off(app.test_client())
        api = f"/api/agent/conversations/{session_id}"
        assert app.test_client().post(f"{api}/claim", headers=ALICE).status_code == 200
        assert app.test_client().post(f"{api}/close", headers=ALICE).status_code == 200
        closed.append(session_id)
    here, gone = hand_off(app.test_client()), hand_off(app.test_client())
    client = app.test_client()
    pages = [
        [
            c["session_id"]
            for c in client.get(
                f"/api/agent/conversations?status=closed&limit=2&offset={offset}", headers=ALICE
            ).get_json()
        ]
        for offset in (0, 2, 4)
    ]
    assert pages == [closed[:2], closed[2:], []]
    assert queue_length(client) == 2.0
    sessions = RedisSessionStore(redis_client, prefix=redis_prefix, ttl_s=60)
    redis_client.delete(sessions.key(gone))  # the customer's session expired
    assert queue_length(client) == 1.0
    listed = client.get("/api/agent/conversations", headers=ALICE).get_json()
    assert {c["session_id"]: c["session_expired"] for c in listed} == {here: False, gone: True}
