"""Requests of one session that overlap: every turn, vote and failure is kept (real Redis, real
concurrent requests against the app or a gunicorn server; also the in-memory store of an app
without Redis)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from support.concurrency import at_once

pytestmark = pytest.mark.integration
AGENT_TOKENS = "alice:tok-alice-1-0123456789"
ALICE = {"Authorization": "Bearer tok-alice-1-0123456789"}
OPENING = "Do you sell gift cards?"
QUESTIONS = [
    "How long does shipping take?",
    "Do you ship to Canada?",
    "How do I return an item?",
    "Can I change my order?",
    "Do you take PayPal?",
    "How do I reset my password?",
    "Is shipping free?",
    "Where is my order?",
]
OFF_TOPIC = [
    "What is the capital of Australia?",
    "Who won the 1998 world cup?",
    "How tall is Mount Everest?",
]
ROUNDS, REPLIES = 5, 8  # before votes were atomic, most rounds lost an agent reply
STORES = pytest.mark.parametrize("redis", [True, False], ids=["redis", "in-memory"])


def app_of(make_app, redis: bool, **settings: object):
    return make_app(**settings) if redis else make_app(redis_url=None, **settings)


def post(app, path: str, body: dict[str, Any], headers: dict[str, str] | None = None):
    """One request from its own client (each thread is its own browser tab)."""
    response = app.test_client().post(path, json=body, headers=headers or {})
    return response.status_code, response.get_json()


def http_post(
    base: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request to a served app: (status, JSON body), error statuses included."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def turns_of(app, session_id: str) -> list[dict[str, Any]]:
    response = app.test_client().get(f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["turns"]


@STORES
def test_messages_sent_at_once_are_all_kept_and_every_answer_can_be_rated(
    make_app, redis: bool
) -> None:
    app = app_of(make_app, redis)
    status, first = post(app, "/api/chat", {"message": OPENING})
    assert status == 200
    sid = first["session_id"]
    replies = at_once(
        [lambda q=q: post(app, "/api/chat", {"message": q, "session_id": sid}) for q in QUESTIONS]
    )
    assert [status for status, _ in replies] == [200] * len(QUESTIONS)
    turns = turns_of(app, sid)  # 9 exchanges: 18 turns, within the cap of 20
    assert sorted(t["text"] for t in turns if t["role"] == "user") == sorted([OPENING, *QUESTIONS])
    turn_ids = [first["turn_id"], *(body["turn_id"] for _, body in replies)]
    assert {t["turn_id"] for t in turns if t["role"] == "bot"} == set(turn_ids)
    votes = at_once(
        [
            lambda t=t: post(
                app, "/api/feedback", {"session_id": sid, "turn_id": t, "rating": "up"}
            )
            for t in turn_ids
        ]
    )
    assert [status for status, _ in votes] == [201] * len(turn_ids), votes
    assert [t["rating"] for t in turns_of(app, sid) if t["role"] == "bot"] == ["up"] * len(turn_ids)


def agent_replies_kept_while_voting(base: str, replies: list[str]) -> list[str]:
    """Hand a session off, then send the agent's `replies` and as many customer votes at once;
    the agent replies the session keeps."""
    status, answered = http_post(base, "/api/chat", {"message": "How do I return an item?"})
    assert status == 200 and answered["outcome"] == "answer"
    sid = answered["session_id"]
    status, handed = http_post(
        base, "/api/chat", {"message": "Can I talk to a person?", "session_id": sid}
    )
    assert status == 200 and handed["handoff"] is True
    assert http_post(base, f"/api/agent/conversations/{sid}/claim", {}, ALICE)[0] == 200
    vote = {"session_id": sid, "turn_id": answered["turn_id"]}
    results = at_once(
        [
            *(
                lambda r=r: http_post(
                    base, f"/api/agent/conversations/{sid}/messages", {"text": r}, ALICE
                )
                for r in replies
            ),
            *(
                lambda i=i: http_post(
                    base, "/api/feedback", {**vote, "rating": ("up", "down")[i % 2]}
                )
                for i in range(len(replies))
            ),
        ]
    )
    assert [status for status, _ in results] == [201] * (2 * len(replies)), results
    with urllib.request.urlopen(f"{base}/api/sessions/{sid}", timeout=30) as response:
        turns = json.loads(response.read())["turns"]
    return [t["text"] for t in turns if t["role"] == "agent"]


@pytest.mark.slow
def test_votes_while_an_agent_replies_keep_every_agent_reply(gunicorn_qa) -> None:
    """Served by two gunicorn workers: the customer's votes and the agent's replies meet in
    Redis from different processes, as behind a load balancer."""
    base, _ = gunicorn_qa(
        THREEFOLD_QA_AGENT_TOKENS=AGENT_TOKENS, WEB_CONCURRENCY="2", GUNICORN_THREADS="8"
    )
    for round_ in range(ROUNDS):
        replies = [f"agent reply {round_}.{i}" for i in range(REPLIES)]
        assert sorted(agent_replies_kept_while_voting(base, replies)) == sorted(replies)


@STORES
def test_failures_sent_at_once_add_up_to_a_handoff(make_app, redis: bool) -> None:
    app = app_of(make_app, redis, handoff_after_failures=len(OFF_TOPIC))
    status, first = post(app, "/api/chat", {"message": "How do I return an item?"})
    assert status == 200 and first["outcome"] == "answer"
    sid = first["session_id"]
    replies = at_once(
        [lambda q=q: post(app, "/api/chat", {"message": q, "session_id": sid}) for q in OFF_TOPIC]
    )
    assert [status for status, _ in replies] == [200] * len(OFF_TOPIC)
    reasons = sorted(body["reason"] for _, body in replies)
    assert reasons.count("repeated_failure") == 1, reasons  # the last of them to be stored
    assert app.test_client().get(f"/api/sessions/{sid}").get_json()["handoff"] is True
