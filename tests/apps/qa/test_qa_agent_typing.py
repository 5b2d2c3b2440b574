"""An agent's "is typing…" reaches the customer only from the agent who holds the conversation,
with the answers a reply gets: 409 while another agent holds it (or nobody has claimed it), 410
once it has ended."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration
TOKENS = "ana:tok-ana-1,ben:tok-ben-2"
ANA = {"Authorization": "Bearer tok-ana-1"}
BEN = {"Authorization": "Bearer tok-ben-2"}


def ask_for_a_person(client, sid: str | None = None) -> str:
    body = {"message": "Can I talk to a real person please?"}
    reply = client.post("/api/chat", json=body | ({"session_id": sid} if sid else {}))
    assert reply.status_code == 200 and reply.get_json()["handoff"] is True
    return reply.get_json()["session_id"]


def first_event(stream, chunks: int = 30) -> dict:
    """The first event of a customer's live stream (a streamed test-client response)."""
    buffer = ""
    for n, chunk in enumerate(stream.response):
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        *blocks, buffer = buffer.split("\n\n")
        for line in (line for block in blocks for line in block.splitlines()):
            if line.startswith("data: "):
                stream.close()
                return json.loads(line[6:])
        assert n < chunks, "no event came"
    raise AssertionError("the stream ended without an event")


def test_typing_by_an_agent_who_does_not_hold_the_conversation_is_409(make_app) -> None:
    client = make_app(agent_tokens=TOKENS).test_client()
    sid = ask_for_a_person(client)
    path = f"/api/agent/conversations/{sid}/typing"
    stream = client.get(f"/api/sessions/{sid}/events", buffered=False)

    waiting = client.post(path, headers=ANA)
    assert waiting.status_code == 409 and waiting.get_json()["error"] == "not_claimed"
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=BEN).status_code == 200
    assert first_event(stream) == {"type": "status", "status": "claimed", "agent": "ben"}

    stream = client.get(f"/api/sessions/{sid}/events", buffered=False)
    refused = client.post(path, headers=ANA)
    assert refused.status_code == 409
    assert (refused.get_json()["error"], refused.get_json()["agent"]) == (
        "claimed_by_another_agent",
        "ben",
    )
    assert client.post(path, headers=BEN).status_code == 204
    assert first_event(stream) == {"type": "typing", "agent": "ben"}  # not ana's


def test_typing_after_the_conversation_ended_is_410(make_app) -> None:
    client = make_app(agent_tokens=TOKENS).test_client()
    sid = ask_for_a_person(client)
    path = f"/api/agent/conversations/{sid}/typing"
    client.post(f"/api/agent/conversations/{sid}/claim", headers=BEN)
    assert client.post(f"/api/agent/conversations/{sid}/close", headers=BEN).status_code == 200

    stream = client.get(f"/api/sessions/{sid}/events", buffered=False)
    for agent in (ANA, BEN):
        ended = client.post(path, headers=agent)
        assert ended.status_code == 410
        assert (ended.get_json()["error"], ended.get_json()["conversation_status"]) == (
            "conversation_ended",
            "closed",
        )
    ask_for_a_person(client, sid)  # a new conversation: its claim is the customer's next event
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=ANA).status_code == 200
    assert first_event(stream) == {"type": "status", "status": "claimed", "agent": "ana"}
