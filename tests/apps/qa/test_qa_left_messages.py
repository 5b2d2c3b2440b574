"""Messages left for the team: every one kept (the newest few), masked like everything stored."""

from __future__ import annotations

import json
import time

import pytest

from threefold.apps.qa import handoff_queue as hq
from threefold.apps.qa.handoff_queue import MemoryHandoffStore, conversation_from_dict
from threefold.apps.qa.redis_handoff import RedisHandoffStore

pytestmark = pytest.mark.integration
TOKENS = "ana:tok-ana-1,ben:tok-ben-2"
ANA = {"Authorization": "Bearer tok-ana-1"}
FIRST = "Order 123 never arrived, call me at 555-0100"
SECOND = "also my email is x@y.z"
SID = "c" * 32


def hand_off(client) -> str:
    reply = client.post("/api/chat", json={"message": "Can I talk to a real person please?"})
    assert reply.status_code == 200 and reply.get_json()["handoff"] is True
    return reply.get_json()["session_id"]


def test_two_left_messages_are_both_kept_and_masked_in_redis_and_the_console(
    make_app, redis_client, redis_prefix
) -> None:
    client = make_app(agent_tokens=TOKENS, agent_wait_timeout_s=0.05).test_client()
    sid = hand_off(client)
    time.sleep(0.1)  # past the wait: the widget offers the form
    for text in (FIRST, SECOND):
        left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": text})
        assert left.status_code == 201, left.get_json()

    masked = ["Order 123 never arrived, call me at [phone]", "also my email is [email]"]
    raw = redis_client.get(f"{redis_prefix}handoff:{sid}").decode()
    assert "555-0100" not in raw and "x@y.z" not in raw
    assert [m["text"] for m in json.loads(raw)["left_messages"]] == masked

    (listed,) = client.get("/api/agent/conversations", headers=ANA).get_json()
    detail = client.get(f"/api/agent/conversations/{sid}", headers=ANA).get_json()
    for shown in (listed, detail):
        assert [m["text"] for m in shown["left_messages"]] == masked
        assert shown["left_messages"][0]["ts"] <= shown["left_messages"][1]["ts"]
        assert shown["left_message"] == masked[-1]  # the newest, as before
    transcript = [t["text"] for t in detail["transcript"] if t["role"] == "user"]
    assert transcript[-2:] == masked
    assert client.get(f"/api/sessions/{sid}").get_json()["agent_state"]["left_message"] is True


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_only_the_newest_left_messages_are_kept(storage: str, redis_client, redis_prefix) -> None:
    store = (
        MemoryHandoffStore()
        if storage == "memory"
        else RedisHandoffStore(redis_client, prefix=redis_prefix)
    )
    store.open(hq.new_conversation(SID, reason="requested", page_url=None, candidates=[]))
    for n in range(hq.MAX_LEFT_MESSAGES + 2):
        store.update(SID, lambda c, n=n: hq.leave_message(c, f"message {n}", float(n)))
    kept = store.get(SID).left_messages
    assert [(m["text"], m["ts"]) for m in kept] == [
        (f"message {n}", float(n)) for n in range(2, hq.MAX_LEFT_MESSAGES + 2)
    ]


def test_a_conversation_stored_with_one_left_message_still_reads(
    make_app, redis_client, redis_prefix
) -> None:
    """A record of the previous version (one `left_message`, stored unmasked) during a rolling
    update: its message shows, masked, and the next one is added to it."""
    client = make_app(agent_tokens=TOKENS).test_client()
    sid = hand_off(client)
    key = f"{redis_prefix}handoff:{sid}"
    old = json.loads(redis_client.get(key))
    old.pop("left_messages", None)
    old["left_message"] = FIRST
    redis_client.set(key, json.dumps(old))

    (listed,) = client.get("/api/agent/conversations", headers=ANA).get_json()
    masked = "Order 123 never arrived, call me at [phone]"
    assert listed["left_messages"] == [{"text": masked, "ts": None}]
    assert listed["left_message"] == masked
    left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": SECOND})
    assert left.status_code == 201, left.get_json()
    detail = client.get(f"/api/agent/conversations/{sid}", headers=ANA).get_json()
    assert [m["text"] for m in detail["left_messages"]] == [masked, "also my email is [email]"]
    assert "555-0100" not in redis_client.get(key).decode()


def test_a_record_without_any_left_message_reads_as_none() -> None:
    record = hq.new_conversation(SID, reason="requested", page_url=None, candidates=[]).to_json()
    del record["left_messages"], record["left_message"]
    conversation = conversation_from_dict(record)
    assert conversation.left_messages == () and conversation.left_message is None
