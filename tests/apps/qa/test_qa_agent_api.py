"""The agent console's HTTP contract on the real embedded Redis: every route and its errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial

import pytest
from support.concurrency import at_once

pytestmark = pytest.mark.integration
TOKENS = "alice:tok-alice-1,bob:tok-bob-2"
ALICE = {"Authorization": "Bearer tok-alice-1"}
BOB = {"Authorization": "Bearer tok-bob-2"}
UNKNOWN_ID = "0" * 32
ROUTES = [
    ("GET", "/api/agent/me"),
    ("GET", "/api/agent/conversations"),
    ("GET", "/api/agent/events"),
    ("GET", "/api/agent/conversations/{sid}"),
    ("POST", "/api/agent/conversations/{sid}/claim"),
    ("POST", "/api/agent/conversations/{sid}/messages"),
    ("POST", "/api/agent/conversations/{sid}/release"),
    ("POST", "/api/agent/conversations/{sid}/close"),
    ("POST", "/api/agent/conversations/{sid}/typing"),
]
SESSION_ROUTES = [r for r in ROUTES if "{sid}" in r[1]]


def chat(client, message: str, **extra: object) -> dict:
    response = client.post("/api/chat", json={"message": message, **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def hand_off(client) -> str:
    """A customer asks for a person; returns the session id now waiting in the queue."""
    reply = chat(client, "Can I talk to a real person please?", page_url="https://shop.test/cart")
    assert reply["handoff"] is True
    return reply["session_id"]


def call(client, method: str, path: str, headers: dict | None = None, **kwargs: object):
    return client.open(path, method=method, headers=headers or {}, **kwargs)


@pytest.fixture
def app(make_app):
    return make_app(agent_tokens=TOKENS)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_an_agent_token(client, method: str, route: str) -> None:
    path = route.format(sid=UNKNOWN_ID)
    missing = call(client, method, path)
    assert missing.status_code == 401
    assert "Authorization: Bearer" in missing.get_json()["message"]
    wrong = call(client, method, path, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.get_json()["error"] == "forbidden"


def test_console_is_disabled_without_agent_tokens(make_app) -> None:
    response = make_app().test_client().get("/api/agent/conversations", headers=ALICE)
    assert response.status_code == 503
    assert "THREEFOLD_QA_AGENT_TOKENS" in response.get_json()["message"]


@pytest.mark.parametrize(("method", "route"), SESSION_ROUTES)
@pytest.mark.parametrize("sid", [UNKNOWN_ID, "not-a-session"])
def test_unknown_session_is_404(client, method: str, route: str, sid: str) -> None:
    response = call(client, method, route.format(sid=sid), ALICE, json={"text": "hi"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown_conversation"


def test_claim_reply_close_and_the_bot_answers_again(client) -> None:
    sid = hand_off(client)
    waiting = client.get("/api/agent/conversations?status=waiting", headers=ALICE).get_json()
    assert [c["session_id"] for c in waiting] == [sid]
    item = waiting[0]
    assert {"session_id", "status", "waiting_since", "agent", "last_message"} <= item.keys()
    assert item["status"] == "waiting" and item["agent"] is None
    assert item["last_message"]["role"] == "bot" and item["page_url"] == "https://shop.test/cart"

    detail = client.get(f"/api/agent/conversations/{sid}", headers=ALICE).get_json()
    assert [t["role"] for t in detail["transcript"]] == ["user", "bot"]
    assert (
        detail["candidates"] and {"faq_id", "question", "answer"} <= detail["candidates"][0].keys()
    )

    claimed = client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    assert claimed.status_code == 200 and claimed.get_json()["agent"] == "alice"
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE).status_code == 200
    refused = client.post(f"/api/agent/conversations/{sid}/claim", headers=BOB)
    assert refused.status_code == 409
    assert refused.get_json() | {"message": ""} == {
        "error": "claimed_by_another_agent",
        "message": "",
        "agent": "alice",
    }
    assert client.get("/api/agent/conversations", headers=ALICE).get_json() == []
    held = client.get("/api/agent/conversations?status=claimed", headers=BOB).get_json()
    assert [(c["session_id"], c["agent"]) for c in held] == [(sid, "alice")]

    quiet = chat(client, "ok thanks, is anyone there?", session_id=sid)
    assert quiet["outcome"] == "agent" and quiet["answer"] is None and quiet["handoff"] is False
    assert quiet["reply"] == "" and quiet["suggestions"] == []

    sent = client.post(
        f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Hi, I'm Alice."}
    )
    assert sent.status_code == 201
    assert sent.get_json()["role"] == "agent" and sent.get_json()["agent"] == "alice"
    by_bob = client.post(
        f"/api/agent/conversations/{sid}/messages", headers=BOB, json={"text": "me too"}
    )
    assert by_bob.status_code == 409

    history = client.get(f"/api/sessions/{sid}").get_json()
    assert [(t["role"], t["agent"]) for t in history["turns"]][-2:] == [
        ("user", None),
        ("agent", "alice"),
    ]
    assert history["turns"][-1]["text"] == "Hi, I'm Alice."
    assert history["agent_state"]["status"] == "claimed"
    assert history["agent_state"]["agent"] == "alice"

    assert client.post(f"/api/agent/conversations/{sid}/close", headers=BOB).status_code == 409
    closed = client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE)
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed"
    late = client.post(
        f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "one more"}
    )
    assert late.status_code == 410 and late.get_json()["error"] == "conversation_ended"
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=BOB).status_code == 410
    assert client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE).status_code == 410
    ended = client.get("/api/agent/conversations?status=closed", headers=ALICE).get_json()
    assert [c["session_id"] for c in ended] == [sid]

    again = chat(client, "Is shipping free?", session_id=sid)
    assert again["outcome"] == "answer" and again["faq_id"] == "shipping_cost"


def test_release_hands_back_to_the_bot(client) -> None:
    sid = hand_off(client)
    early = client.post(
        f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "x"}
    )
    assert early.status_code == 409 and early.get_json()["error"] == "not_claimed"
    assert client.post(f"/api/agent/conversations/{sid}/release", headers=ALICE).status_code == 409
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    released = client.post(f"/api/agent/conversations/{sid}/release", headers=ALICE)
    assert released.status_code == 200 and released.get_json()["status"] == "released"
    assert chat(client, "Is shipping free?", session_id=sid)["outcome"] == "answer"
    assert hand_off_again(client, sid) == "waiting"


def hand_off_again(client, sid: str) -> str:
    reply = chat(client, "I want a human agent", session_id=sid)
    assert reply["handoff"] is True
    return client.get(f"/api/sessions/{sid}").get_json()["agent_state"]["status"]


def test_bad_requests_are_4xx_with_the_fix(client) -> None:
    sid = hand_off(client)
    status = client.get("/api/agent/conversations?status=open", headers=ALICE)
    assert status.status_code == 400
    assert "['claimed', 'closed', 'released', 'waiting']" in status.get_json()["message"]
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    for body in ({}, {"text": 5}, {"text": "   "}, {"text": "x" * 5000}):
        response = client.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json=body)
        assert response.status_code == 400, body
    page_url = client.post("/api/chat", json={"message": "hi", "page_url": 7})
    assert page_url.status_code == 400 and page_url.get_json()["field"] == "page_url"


def test_unclaimed_timeout_and_a_message_left_for_the_team(make_app) -> None:
    client = make_app(agent_tokens=TOKENS, agent_wait_timeout_s=0.05).test_client()
    sid = hand_off(client)
    time.sleep(0.1)
    state = client.get(f"/api/sessions/{sid}").get_json()["agent_state"]
    assert state["status"] == "waiting" and state["timed_out"] is True
    left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": "Call me back"})
    assert left.status_code == 201
    listed = client.get("/api/agent/conversations", headers=ALICE).get_json()
    assert listed[0]["left_message"] == "Call me back"
    assert listed[0]["last_message"]["text"] == "Call me back"
    assert client.post(f"/api/sessions/{sid}/message-for-team", json={}).status_code == 400
    other = chat(client, "Is shipping free?")["session_id"]
    unknown = client.post(f"/api/sessions/{other}/message-for-team", json={"text": "hi"})
    assert unknown.status_code == 404
    assert "ask for a person" in unknown.get_json()["message"]  # not the agents' console route
    assert "/api/agent" not in unknown.get_json()["message"]


@pytest.mark.parametrize(("ending", "status"), [("close", "closed"), ("release", "released")])
@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_a_message_left_after_the_team_ended_the_conversation_is_refused(
    make_app, storage: str, ending: str, status: str
) -> None:
    """An ended conversation is in no agent's queue: a 409 that says what to do, not a 201
    "stored" that nobody reads (the widget's form can still be open when the agent ends it)."""
    settings = {"agent_tokens": TOKENS, **({"redis_url": None} if storage == "memory" else {})}
    client = make_app(**settings).test_client()
    sid = hand_off(client)
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    assert client.post(f"/api/agent/conversations/{sid}/{ending}", headers=ALICE).status_code == 200
    left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": "Call me back"})
    assert left.status_code == 409, left.get_json()
    refused = left.get_json()
    assert (refused["error"], refused["conversation_status"]) == ("conversation_ended", status)
    assert "ask for a person in the chat" in refused["message"]
    assert "/api/agent" not in refused["message"]  # the customer's wording, not the console's
    session = client.get(f"/api/sessions/{sid}").get_json()
    assert "Call me back" not in [t["text"] for t in session["turns"]]
    assert session["agent_state"]["left_message"] is False
    again = chat(client, "Can I talk to a real person please?", session_id=sid)
    assert again["handoff"] is True  # what the message says to do: a new conversation, queued
    left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": "Call me back"})
    assert left.status_code == 201, left.get_json()
    listed = client.get("/api/agent/conversations", headers=ALICE).get_json()
    assert [(c["session_id"], c["left_message"]) for c in listed] == [(sid, "Call me back")]


INVISIBLE = ["\u200b", "\u200b\u200b", "\ufeff", "\u2800", " \u3164\u200d "]


def test_text_with_nothing_visible_is_refused_as_empty(make_app) -> None:
    """Zero-width spaces, a BOM or blank fillers alone show nothing: a 400 naming the field, not
    a chat turn counted as out of scope or a left message that replaces the real one."""
    app = make_app(agent_tokens=TOKENS)
    client = app.test_client()
    for text in INVISIBLE:
        refused = client.post("/api/chat", json={"message": text})
        assert refused.status_code == 400, (ascii(text), refused.get_json())
        assert refused.get_json()["field"] == "message"
        assert "message is empty" in refused.get_json()["message"]
    assert app.extensions["threefold.qa"].feedback.unanswered() == []
    sid = hand_off(client)
    assert (
        client.post(f"/api/sessions/{sid}/message-for-team", json={"text": "Call me"}).status_code
        == 201
    )
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    for text in INVISIBLE:
        left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": text})
        reply = client.post(
            f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": text}
        )
        for response in (left, reply):
            assert response.status_code == 400, (ascii(text), response.get_json())
            assert response.get_json()["field"] == "text"
            assert "text is empty" in response.get_json()["message"]
    (listed,) = client.get("/api/agent/conversations?status=claimed", headers=ALICE).get_json()
    assert listed["left_message"] == "Call me"
    turns = client.get(f"/api/sessions/{sid}").get_json()["turns"]
    assert [t["role"] for t in turns][-1:] == ["user"] and turns[-1]["text"] == "Call me"


def read_events(response, count: int, seconds: float = 10.0) -> list[dict]:
    """The first `count` SSE events of a streamed test-client response."""
    events, buffer, deadline = [], "", time.monotonic() + seconds
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
            if data:
                events.append(json.loads(data[0]))
        if len(events) >= count or time.monotonic() > deadline:
            break
    response.close()
    return events


def test_two_workers_share_claims_and_events(make_app) -> None:
    first = make_app(agent_tokens=TOKENS).test_client()
    second = make_app(agent_tokens=TOKENS).test_client()
    sid = hand_off(first)
    assert [
        c["session_id"] for c in second.get("/api/agent/conversations", headers=BOB).get_json()
    ] == [sid]

    stream = second.get(f"/api/sessions/{sid}/events", buffered=False)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    assert first.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE).status_code == 200
    assert second.post(f"/api/agent/conversations/{sid}/claim", headers=BOB).status_code == 409
    first.post(f"/api/agent/conversations/{sid}/typing", headers=ALICE)
    first.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Hello!"})
    events = read_events(stream, 3)
    assert [e["type"] for e in events] == ["status", "typing", "message"]
    assert events[0] == {"type": "status", "status": "claimed", "agent": "alice"}
    assert events[2]["turn"]["text"] == "Hello!" and events[2]["turn"]["agent"] == "alice"
    assert chat(second, "thanks", session_id=sid)["outcome"] == "agent"


def test_console_stream_shows_new_handoffs_and_customer_typing(make_app) -> None:
    first = make_app(agent_tokens=TOKENS).test_client()
    second = make_app(agent_tokens=TOKENS).test_client()
    stream = second.get("/api/agent/events", headers=BOB, buffered=False)
    sid = hand_off(first)
    assert first.post(f"/api/sessions/{sid}/typing").status_code == 204
    events = read_events(stream, 2)
    assert events == [
        {"type": "conversation", "session_id": sid, "status": "waiting"},
        {"type": "typing", "session_id": sid},
    ]


def test_a_repeated_claim_answers_the_same_and_sends_no_second_event(make_app) -> None:
    first = make_app(agent_tokens=TOKENS).test_client()
    second = make_app(agent_tokens=TOKENS).test_client()
    sid = hand_off(first)
    console = second.get("/api/agent/events", headers=BOB, buffered=False)
    widget = second.get(f"/api/sessions/{sid}/events", buffered=False)
    claims = [first.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE) for _ in "12"]
    assert [c.status_code for c in claims] == [200, 200]
    assert claims[0].get_json() == claims[1].get_json()
    taken = first.post(f"/api/agent/conversations/{sid}/claim", headers=BOB)
    assert taken.status_code == 409 and taken.get_json()["agent"] == "alice"
    assert first.post(f"/api/sessions/{sid}/typing").status_code == 204  # the next event
    first.post(f"/api/agent/conversations/{sid}/typing", headers=ALICE)
    assert read_events(console, 2) == [
        {"type": "conversation", "session_id": sid, "status": "claimed"},
        {"type": "typing", "session_id": sid},
    ]
    assert [e["type"] for e in read_events(widget, 2)] == ["status", "typing"]
    text = first.get("/metrics").get_data(as_text=True)
    assert 'qa_agent_conversations_total{agent="alice"} 1.0' in text


def test_long_polling_returns_the_next_event(client) -> None:
    sid = hand_off(client)
    assert client.get(f"/api/sessions/{sid}/wait?timeout=0.2").get_json() == {"event": None}
    assert client.get(f"/api/sessions/{sid}/wait?timeout=60").status_code == 400
    assert client.get(f"/api/sessions/{sid}/wait?timeout=soon").status_code == 400
    assert client.get(f"/api/sessions/{UNKNOWN_ID}/wait").status_code == 404
    assert client.get(f"/api/sessions/{UNKNOWN_ID}/events").status_code == 404
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)

    def reply_soon() -> None:
        time.sleep(0.3)
        client.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Hi"})

    thread = threading.Thread(target=reply_soon)
    thread.start()
    event = client.get(f"/api/sessions/{sid}/wait?timeout=10").get_json()["event"]
    thread.join()
    assert event["type"] == "message" and event["turn"]["text"] == "Hi"


def test_long_polling_answers_at_once_when_the_client_missed_a_change(client) -> None:
    sid = hand_off(client)
    seen = client.get(f"/api/sessions/{sid}").get_json()
    turns, status = len(seen["turns"]), seen["agent_state"]["status"]
    assert status == "waiting"
    current = f"/api/sessions/{sid}/wait?timeout=0.2&turns={turns}&status={status}"
    assert client.get(current).get_json() == {"event": None}  # nothing new: it waits
    # the agent claims and replies after the widget's last GET, before its next poll
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    client.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Hi"})
    stale = f"/api/sessions/{sid}/wait?timeout=10&turns={turns}&status={status}"
    assert client.get(stale).get_json() == {"event": None, "changed": True}
    claimed = f"/api/sessions/{sid}/wait?timeout=10&turns={turns + 1}&status=waiting"
    assert client.get(claimed).get_json() == {"event": None, "changed": True}
    for bad in ("-1", "x", "1.5", "\u00b2", "9" * 12):
        response = client.get(f"/api/sessions/{sid}/wait?timeout=1&turns={bad}")
        assert response.status_code == 400 and response.get_json()["field"] == "turns"


def test_metrics_count_queue_claims_first_replies_and_endings(client) -> None:
    sid = hand_off(client)
    hand_off(client)
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    client.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Hi"})
    client.post(f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "Again"})
    client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE)
    text = client.get("/metrics").get_data(as_text=True)
    assert "qa_agent_queue_length 1.0" in text
    assert 'qa_agent_conversations_total{agent="alice"} 1.0' in text
    assert "qa_agent_first_reply_seconds_count 1.0" in text
    assert 'qa_agent_conversations_ended_total{how="closed"} 1.0' in text


def test_agent_tokens_are_never_logged(make_app, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_app(agent_tokens=TOKENS).test_client()
    client.get("/api/agent/me", headers=ALICE)
    client.get("/api/agent/me", headers={"Authorization": "Bearer tok-wrong"})
    assert client.get("/api/agent/me", headers=ALICE).get_json() == {"agent": "alice"}
    assert "tok-alice-1" not in caplog.text and "tok-bob-2" not in caplog.text


def test_redis_down_is_503_with_retry_after(make_app) -> None:
    client = make_app(agent_tokens=TOKENS, redis_url="redis://127.0.0.1:9/0").test_client()
    response = client.get("/api/agent/conversations", headers=ALICE)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "redis_unavailable"


def test_without_redis_the_console_works_in_one_process(make_app) -> None:
    client = make_app(agent_tokens=TOKENS, redis_url=None).test_client()
    sid = hand_off(client)
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE).status_code == 200
    assert client.post(f"/api/agent/conversations/{sid}/claim", headers=BOB).status_code == 409
    assert chat(client, "hello?", session_id=sid)["outcome"] == "agent"
    client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE)
    assert chat(client, "Is shipping free?", session_id=sid)["outcome"] == "answer"


def test_reply_after_the_customer_session_expired_is_410(make_app) -> None:
    client = make_app(agent_tokens=TOKENS, session_ttl_s=1).test_client()
    sid = hand_off(client)
    client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    time.sleep(1.5)
    detail = client.get(f"/api/agent/conversations/{sid}", headers=ALICE).get_json()
    assert detail["session_expired"] is True and detail["transcript"] == []
    late = client.post(
        f"/api/agent/conversations/{sid}/messages", headers=ALICE, json={"text": "hi"}
    )
    assert late.status_code == 410 and late.get_json()["error"] == "session_expired"
    assert client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE).status_code == 200


def test_an_agent_reply_and_a_customer_message_at_once_are_both_kept(client) -> None:
    for round_ in range(12):
        sid = hand_off(client)
        client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
        at_once(
            [
                partial(chat, client, f"customer message {round_}", session_id=sid),
                partial(
                    client.post,
                    f"/api/agent/conversations/{sid}/messages",
                    headers=ALICE,
                    json={"text": f"agent reply {round_}"},
                ),
            ]
        )
        texts = [t["text"] for t in client.get(f"/api/sessions/{sid}").get_json()["turns"]]
        assert f"customer message {round_}" in texts and f"agent reply {round_}" in texts, texts
        client.post(f"/api/agent/conversations/{sid}/close", headers=ALICE)
