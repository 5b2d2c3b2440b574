"""The QA bot through a Redis outage (a real redis-server, stopped mid-conversation)."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis
from support.services import frozen

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


def test_exports_and_the_review_queue_are_503_while_redis_is_down(
    make_app, hung_redis, admin_headers
) -> None:
    """They would list only this worker's records of the outage, as if the rest were gone."""
    client = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3).test_client()
    with frozen(hung_redis):
        for path in ("/api/admin/feedback.csv", "/api/admin/unanswered.csv", "/api/review"):
            response = client.get(path, headers=admin_headers)
            assert response.status_code == 503, path
            assert response.get_json()["error"] == "redis_unavailable"
            assert int(response.headers["Retry-After"]) > 0


def test_review_actions_are_503_while_redis_is_down_and_the_items_stay_queued(
    make_app, hung_redis, admin_headers
) -> None:
    """Read from this worker's records only, every item would look already reviewed (a 409
    `not_in_queue` telling the admin to reload): the actions wait for Redis instead."""
    settings = {"redis_url": hung_redis.url, "redis_timeout_s": 0.3}
    client = make_app(**settings).test_client()
    declined = chat(client, "what is the airspeed of an unladen swallow").get_json()
    assert declined["outcome"] == "out_of_scope"
    (group,) = client.get("/api/review", headers=admin_headers).get_json()["groups"]
    items = group["item_ids"]
    actions = {
        "dismiss": {"items": items},
        "paraphrase": {"items": items, "faq_id": "damaged_item"},
        "new-faq": {"items": items, "id": "swallows", "answer": "About 11 m/s."},
    }
    with frozen(hung_redis):
        for route, body in actions.items():
            response = client.post(f"/api/review/{route}", headers=admin_headers, json=body)
            assert response.status_code == 503, (route, response.get_json())
            assert response.get_json()["error"] == "redis_unavailable"
            assert int(response.headers["Retry-After"]) > 0
    other_worker = make_app(**settings).test_client()  # its breaker never opened
    listing = other_worker.get("/api/review", headers=admin_headers).get_json()
    assert [g["item_ids"] for g in listing["groups"]] == [items]
    assert "swallows" not in {f["id"] for f in listing["faqs"]}


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


AGENT = {"Authorization": "Bearer tok-ana-1"}


def test_feedback_kept_during_an_outage_reaches_redis_when_it_is_back(
    make_app, hung_redis, admin_headers
) -> None:
    app = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=0)
    client = app.test_client()
    with frozen(hung_redis):
        answer = chat(client, "Is shipping free?").get_json()
        rated = client.post(
            "/api/feedback",
            json={
                "session_id": answer["session_id"],
                "turn_id": answer["turn_id"],
                "rating": "down",
            },
        )
        assert rated.status_code == 201
        declined = chat(client, "what is the airspeed of an unladen swallow").get_json()
        assert declined["outcome"] == "out_of_scope"
    feedback = client.get("/api/admin/feedback.csv", headers=admin_headers).get_data(as_text=True)
    assert answer["turn_id"] in feedback
    unanswered = client.get("/api/admin/unanswered.csv", headers=admin_headers)
    assert declined["session_id"] in unanswered.get_data(as_text=True)


def test_a_handoff_nobody_can_receive_is_503_not_a_false_promise(make_app, hung_redis) -> None:
    app = make_app(
        redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=0, agent_tokens="ana:tok-ana-1"
    )
    client = app.test_client()
    session_id = chat(client, "Is shipping free?").get_json()["session_id"]
    with frozen(hung_redis):
        during = chat(client, "talk to a person please", session_id=session_id)
    assert during.status_code == 503, during.get_json()
    assert during.get_json()["error"] == "agents_unreachable"
    assert int(during.headers["Retry-After"]) > 0
    retried = chat(client, "talk to a person please", session_id=session_id)
    assert retried.status_code == 200 and retried.get_json()["handoff"] is True
    waiting = client.get("/api/agent/conversations?status=waiting", headers=AGENT).get_json()
    assert [c["session_id"] for c in waiting] == [session_id]
    turns = client.get(f"/api/sessions/{session_id}").get_json()["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == [
        "Is shipping free?",
        "talk to a person please",
    ]


def test_a_vote_during_an_outage_is_503_not_an_unknown_turn(make_app, hung_redis) -> None:
    client = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3).test_client()
    answer = chat(client, "Is shipping free?").get_json()
    with frozen(hung_redis):
        rated = client.post(
            "/api/feedback",
            json={"session_id": answer["session_id"], "turn_id": answer["turn_id"], "rating": "up"},
        )
    assert rated.status_code == 503, rated.get_json()
    assert rated.get_json()["error"] == "redis_unavailable"
    assert int(rated.headers["Retry-After"]) > 0


def hand_off(client, *, claim: bool = False) -> str:
    """A session handed to a person (waiting, or claimed by ana); returns its id."""
    reply = chat(client, "talk to a person please").get_json()
    assert reply["handoff"] is True, reply
    if claim:
        claimed = client.post(
            f"/api/agent/conversations/{reply['session_id']}/claim", headers=AGENT
        )
        assert claimed.status_code == 200
    return reply["session_id"]


def customer_texts(turns: list[dict]) -> list[str]:
    return [t["text"] for t in turns if t["role"] == "user"]


@pytest.mark.parametrize(
    ("claimed", "reason"), [(False, "waiting_for_agent"), (True, "agent_owned")]
)
def test_a_message_for_a_person_during_an_outage_is_503_not_a_bot_answer(
    make_app, hung_redis, claimed: bool, reason: str
) -> None:
    """The bot must not answer behind the person's back: the customer's intent would be lost."""
    app = make_app(
        redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=0, agent_tokens="ana:tok-ana-1"
    )
    client = app.test_client()
    session_id = hand_off(client, claim=claimed)
    with frozen(hung_redis):
        during = chat(client, "Is shipping free?", session_id=session_id)
    assert during.status_code == 503, during.get_json()
    assert during.get_json()["error"] == "agents_unreachable"
    assert int(during.headers["Retry-After"]) > 0
    retried = chat(client, "Is shipping free?", session_id=session_id)  # what the widget does
    assert retried.status_code == 200
    assert (retried.get_json()["outcome"], retried.get_json()["reason"]) == ("agent", reason)
    transcript = client.get(f"/api/agent/conversations/{session_id}", headers=AGENT).get_json()
    assert customer_texts(transcript["transcript"]) == [
        "talk to a person please",
        "Is shipping free?",
    ]


def test_a_worker_that_only_followed_the_handoff_also_refuses_its_messages(
    make_app, hung_redis
) -> None:
    """Any read of the conversation teaches a worker, e.g. the widget reloading the session."""
    settings = {"redis_url": hung_redis.url, "redis_timeout_s": 0.3, "redis_retry_s": 0}
    first = make_app(**settings, agent_tokens="ana:tok-ana-1").test_client()
    other = make_app(**settings).test_client()
    session_id = hand_off(first)
    state = other.get(f"/api/sessions/{session_id}").get_json()["agent_state"]
    assert state["status"] == "waiting"
    with frozen(hung_redis):
        during = chat(other, "Is shipping free?", session_id=session_id)
    assert during.status_code == 503, during.get_json()
    assert during.get_json()["error"] == "agents_unreachable"


def test_a_worker_that_never_saw_the_handoff_refuses_a_message_the_widget_marks_for_a_person(
    make_app, hung_redis
) -> None:
    """The widget knows the conversation is with a person (`with_person`), whichever worker it
    reached before; a worker that never read the session takes its word during an outage."""
    settings = {"redis_url": hung_redis.url, "redis_timeout_s": 0.3, "redis_retry_s": 0}
    first = make_app(**settings, agent_tokens="ana:tok-ana-1").test_client()
    other = make_app(**settings).test_client()
    session_id = hand_off(first)
    with frozen(hung_redis):
        unmarked = chat(other, "Is shipping free?", session_id=session_id)
        marked = chat(other, "Is shipping free?", session_id=session_id, with_person=True)
    assert unmarked.status_code == 200  # the documented gap without the widget's word
    assert marked.status_code == 503, marked.get_json()
    assert marked.get_json()["error"] == "agents_unreachable"
    assert marked.headers["Retry-After"]


def test_a_conversation_closed_on_another_worker_is_answered_by_the_bot_through_an_outage(
    make_app, hung_redis
) -> None:
    """A worker that saw the conversation only in the agent console's lists learns from the next
    refresh of the console that it ended elsewhere: no false 503 in an outage after that."""
    settings = {
        "redis_url": hung_redis.url,
        "redis_timeout_s": 0.3,
        "redis_retry_s": 0,
        "agent_tokens": "ana:tok-ana-1",
    }
    desk = make_app(**settings).test_client()
    console = make_app(**settings).test_client()

    def refresh_console() -> None:
        for status in ("waiting", "claimed"):
            listed = console.get(f"/api/agent/conversations?status={status}", headers=AGENT)
            assert listed.status_code == 200

    session_id = hand_off(desk, claim=True)
    refresh_console()
    closed = desk.post(f"/api/agent/conversations/{session_id}/close", headers=AGENT)
    assert closed.status_code == 200
    refresh_console()
    with frozen(hung_redis):
        during = chat(console, "Is shipping free?", session_id=session_id)
    assert during.status_code == 200, during.get_json()
    assert during.get_json()["faq_id"] == "shipping_cost"


def test_with_person_must_be_a_boolean(make_app) -> None:
    reply = chat(make_app().test_client(), "Is shipping free?", with_person="yes")
    assert reply.status_code == 400
    assert reply.get_json()["field"] == "with_person"


def test_after_the_person_let_go_the_bot_answers_through_an_outage(make_app, hung_redis) -> None:
    app = make_app(
        redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=0, agent_tokens="ana:tok-ana-1"
    )
    client = app.test_client()
    session_id = hand_off(client, claim=True)
    released = client.post(f"/api/agent/conversations/{session_id}/release", headers=AGENT)
    assert released.status_code == 200
    with frozen(hung_redis):
        during = chat(client, "Is shipping free?", session_id=session_id)
    assert during.status_code == 200, during.get_json()
    assert during.get_json()["outcome"] == "answer"
    assert during.get_json()["faq_id"] == "shipping_cost"


def test_right_after_an_outage_messages_for_a_person_are_stored_in_redis(
    make_app, hung_redis
) -> None:
    """While this worker still answers without Redis (breaker open), a message for the person
    and the person's reply go to Redis, not this worker's memory: another worker shows both."""
    settings = {"redis_url": hung_redis.url, "redis_timeout_s": 0.3, "redis_retry_s": 60}
    worker = make_app(**settings, agent_tokens="ana:tok-ana-1").test_client()
    other = make_app(**settings).test_client()
    session_id = hand_off(worker, claim=True)
    with frozen(hung_redis):
        assert chat(worker, "Is shipping free?", session_id=session_id).status_code == 503
    retried = chat(worker, "Is shipping free?", session_id=session_id)
    assert retried.status_code == 200
    assert retried.get_json()["degraded"] == "redis unavailable"  # the breaker is still open
    assert retried.get_json()["outcome"] == "agent"
    sent = worker.post(
        f"/api/agent/conversations/{session_id}/messages",
        headers=AGENT,
        json={"text": "Yes, on orders over $50."},
    )
    assert sent.status_code == 201
    turns = other.get(f"/api/sessions/{session_id}").get_json()["turns"]
    assert customer_texts(turns) == ["talk to a person please", "Is shipping free?"]
    assert [t["text"] for t in turns if t["role"] == "agent"] == ["Yes, on orders over $50."]


def gauge(client, name: str) -> float:
    metrics = client.get("/metrics").get_data(as_text=True)
    return float(re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE).group(1))


def waiting_records(client) -> tuple[float, float]:
    """(records in the host's spool, records in this worker's memory) waiting for Redis."""
    return gauge(client, "qa_records_spooled"), gauge(client, "qa_records_pending")


def test_records_kept_during_an_outage_reach_redis_without_another_request(
    make_app, hung_redis, redis_prefix: str
) -> None:
    client = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3).test_client()
    with frozen(hung_redis):
        answer = chat(client, "Is shipping free?").get_json()
        rated = client.post(
            "/api/feedback",
            json={"session_id": answer["session_id"], "turn_id": answer["turn_id"], "rating": "up"},
        )
        assert rated.status_code == 201
        declined = chat(client, "what is the airspeed of an unladen swallow").get_json()
        assert declined["outcome"] == "out_of_scope"
        assert waiting_records(client) == (2, 0)  # on disk: they outlive this worker
    redis_client = redis.Redis.from_url(hung_redis.url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            feedback = redis_client.lrange(redis_prefix + "feedback", 0, -1)
            unanswered = redis_client.lrange(redis_prefix + "unanswered", 0, -1)
            if feedback and unanswered:
                break
            time.sleep(0.2)
    finally:
        redis_client.close()
    assert [json.loads(r)["turn_id"] for r in feedback] == [answer["turn_id"]]
    assert [json.loads(r)["session_id"] for r in unanswered] == [declined["session_id"]]
    assert waiting_records(client) == (0, 0)
