"""The HTTP API on the real embedded Redis: chat, sessions, follow-ups, handoff, feedback, admin."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest

from threefold.apps.qa.builder import build_bot
from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
from threefold.apps.qa.store import BotStore

pytestmark = pytest.mark.integration


def chat(client, message: str, **extra: object):
    return client.post("/api/chat", json={"message": message, **extra})


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def test_confident_question_is_answered_in_a_new_session(client) -> None:
    response = chat(client, "Is shipping free?")
    assert response.status_code == 200
    body = response.get_json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["session_id"])
    assert body["faq_id"] == "shipping_cost"
    assert body["answer"].startswith("Standard shipping is free on orders over $50")
    assert body["outcome"] == "answer" and body["handoff"] is False
    assert body["suggestions"] == []
    assert 0.5 < body["confidence"] <= 1.0


def test_session_lives_in_redis_with_a_ttl(make_app, redis_client, redis_prefix) -> None:
    client = make_app(session_ttl_s=120).test_client()
    first = chat(client, "Do you sell gift cards?").get_json()
    session_id = first["session_id"]
    second = chat(client, "How do I reset my password?", session_id=session_id).get_json()
    assert second["session_id"] == session_id
    key = f"{redis_prefix}session:{session_id}"
    assert 0 < redis_client.ttl(key) <= 120
    history = client.get(f"/api/sessions/{session_id}").get_json()
    assert [t["role"] for t in history["turns"]] == ["user", "bot", "user", "bot"]
    assert history["turns"][3]["faq_id"] == "password_reset"


SHIPPING_FAQ = [
    ("cost_canada", "How much does shipping to Canada cost?", "Canada: $19.95."),
    ("time_canada", "How long does shipping to Canada take?", "Canada: 7-10 days."),
    ("cost_mexico", "How much does shipping to Mexico cost?", "Mexico: $24.95."),
    ("time_mexico", "How long does shipping to Mexico take?", "Mexico: 10-14 days."),
    ("returns", "How do I return an item?", "Within 30 days."),
]


def shipping_client(make_app, embedder, tmp_path: Path):
    """A client of a bot with two close questions per country (follow-ups need the context)."""
    kb = KnowledgeBase(
        entry_from_mapping({"id": i, "question": q, "answer": a}) for i, q, a in SHIPPING_FAQ
    )
    BotStore(tmp_path / "ship").publish(build_bot(kb, embedder))
    return make_app(bot_dir=str(tmp_path / "ship")).test_client()


def test_short_follow_up_uses_the_previous_turn(make_app, embedder, tmp_path: Path) -> None:
    client = shipping_client(make_app, embedder, tmp_path)
    first = chat(client, "How long does shipping to Canada take?").get_json()
    assert first["faq_id"] == "time_canada"
    follow = chat(client, "and to Mexico?", session_id=first["session_id"]).get_json()
    assert (follow["faq_id"], follow["used_context"]) == ("time_mexico", True)
    alone = chat(client, "and to Mexico?").get_json()
    assert alone["faq_id"] is None and alone["outcome"] == "clarify"
    assert {s["faq_id"] for s in alone["suggestions"][:2]} == {"cost_mexico", "time_mexico"}


@pytest.mark.parametrize("small_talk", ["thanks!", "ok"])
def test_small_talk_between_a_question_and_its_follow_up_keeps_the_context(
    make_app, embedder, tmp_path: Path, small_talk: str
) -> None:
    client = shipping_client(make_app, embedder, tmp_path)
    first = chat(client, "How long does shipping to Canada take?").get_json()
    session_id = first["session_id"]
    assert chat(client, small_talk, session_id=session_id).get_json()["outcome"] == "small_talk"
    follow = chat(client, "and to Mexico?", session_id=session_id).get_json()
    assert (follow["outcome"], follow["faq_id"], follow["used_context"]) == (
        "answer",
        "time_mexico",
        True,
    )


def test_out_of_scope_questions_say_what_the_bot_can_do_then_hand_off(
    make_app, webhook_server
) -> None:
    url, received = webhook_server
    client = make_app(handoff_webhook=url).test_client()
    first = chat(client, "What is the capital of Australia?").get_json()
    assert first["outcome"] == "out_of_scope" and first["reason"] == "out_of_scope"
    assert first["answer"] is None and first["handoff"] is False
    assert first["suggestions"] == []  # no unrelated FAQs offered
    assert "I can help with account, returns, shipping" in first["reply"]
    assert "talk to a person" in first["reply"]
    second = chat(client, "Who won the 1998 world cup?", session_id=first["session_id"])
    body = second.get_json()
    assert body["handoff"] is True and body["reason"] == "repeated_failure"
    payload = received.get(timeout=10)
    assert payload["session_id"] == first["session_id"]
    assert payload["reason"] == "repeated_failure"
    texts = [t["text"] for t in payload["transcript"] if t["role"] == "user"]
    assert texts == ["What is the capital of Australia?", "Who won the 1998 world cup?"]
    assert len(payload["candidates"]) == 5
    assert {"faq_id", "question", "answer", "score"} <= set(payload["candidates"][0])


def test_asking_for_a_person_hands_off_with_transcript(make_app, webhook_server) -> None:
    url, received = webhook_server
    client = make_app(handoff_webhook=url).test_client()
    first = chat(client, "My parcel arrived damaged").get_json()
    reply = chat(client, "I want to talk to a human", session_id=first["session_id"]).get_json()
    assert reply["handoff"] is True and reply["reason"] == "requested"
    assert "member of our team" in reply["reply"]
    payload = received.get(timeout=10)
    assert payload["reason"] == "requested"
    assert payload["transcript"][1]["faq_id"] == "damaged_item"
    assert payload["transcript"][-2]["text"] == "I want to talk to a human"
    assert payload["candidates"]


def test_failing_webhook_is_logged_and_never_breaks_chat(make_app, caplog) -> None:
    app = make_app(handoff_webhook="http://127.0.0.1:9/unreachable", handoff_timeout_s=1.0)
    client = app.test_client()
    response = chat(client, "Can I speak to a representative?")
    assert response.status_code == 200 and response.get_json()["handoff"] is True
    deadline = time.monotonic() + 15
    metric = 'qa_handoff_webhook_total{result="failed"} 1.0'
    while metric not in client.get("/metrics").get_data(as_text=True):
        assert time.monotonic() < deadline, "the failed webhook was not counted"
        time.sleep(0.1)
    assert any("handoff webhook failed" in r.getMessage() for r in caplog.records)


def test_clicking_a_suggestion_answers_that_faq(client) -> None:
    first = chat(client, "account").get_json()
    pick = first["suggestions"][0]
    reply = chat(
        client, pick["question"], session_id=first["session_id"], faq_id=pick["faq_id"]
    ).get_json()
    assert reply["faq_id"] == pick["faq_id"]
    assert reply["reason"] == "selected" and reply["confidence"] == 1.0


def test_feedback_is_stored_and_exported_as_csv(client, admin_headers) -> None:
    reply = chat(client, "How do I track my order?").get_json()
    response = client.post(
        "/api/feedback",
        json={"session_id": reply["session_id"], "turn_id": reply["turn_id"], "rating": "up"},
    )
    assert response.status_code == 201
    chat(client, "=HYPERLINK(evil) recipe for pancakes")
    exported = client.get("/api/admin/feedback.csv", headers=admin_headers)
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["rating"], r["faq_id"], r["question"]) for r in rows] == [
        ("up", "track_order", "How do I track my order?")
    ]
    unanswered = client.get("/api/admin/unanswered.csv", headers=admin_headers).get_data(
        as_text=True
    )
    logged = list(csv.DictReader(io.StringIO(unanswered)))
    assert logged[0]["question"] == "'=HYPERLINK(evil) recipe for pancakes"
    assert logged[0]["reason"] == "out_of_scope"


def test_a_second_vote_replaces_the_first_and_the_session_remembers_it(
    client, admin_headers
) -> None:
    reply = chat(client, "How do I track my order?").get_json()
    vote = {"session_id": reply["session_id"], "turn_id": reply["turn_id"]}
    assert client.post("/api/feedback", json={**vote, "rating": "up"}).status_code == 201
    assert client.post("/api/feedback", json={**vote, "rating": "down"}).status_code == 201
    exported = client.get("/api/admin/feedback.csv", headers=admin_headers).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["turn_id"], r["rating"]) for r in rows] == [(reply["turn_id"], "down")]
    history = client.get(f"/api/sessions/{reply['session_id']}").get_json()
    answer = history["turns"][1]
    assert (answer["rating"], answer["faq_id"]) == ("down", "track_order")
    assert answer["faq_question"] == reply["question"] == "How do I track my order?"


def test_session_view_keeps_the_suggestions_offered(client) -> None:
    first = chat(client, "account").get_json()
    assert first["suggestions"]
    history = client.get(f"/api/sessions/{first['session_id']}").get_json()
    assert history["turns"][1]["suggestions"] == first["suggestions"]
    assert history["turns"][1]["faq_question"] is None


def test_feedback_errors(client) -> None:
    reply = chat(client, "How do I track my order?").get_json()
    base = {"session_id": reply["session_id"], "turn_id": reply["turn_id"]}
    bad_rating = client.post("/api/feedback", json={**base, "rating": "meh"})
    assert bad_rating.status_code == 400 and "rating must be one of" in bad_rating.json["message"]
    wrong_turn = client.post("/api/feedback", json={**base, "turn_id": "0" * 32, "rating": "up"})
    assert (wrong_turn.status_code, wrong_turn.json["error"]) == (404, "unknown_turn")
    no_session = client.post("/api/feedback", json={**base, "session_id": "a" * 32, "rating": "up"})
    assert (no_session.status_code, no_session.json["error"]) == (404, "unknown_session")


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        (
            {"data": "message=hi", "content_type": "application/x-www-form-urlencoded"},
            415,
            "application/json",
        ),
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"json": ["Is shipping free?"]}, 400, "expected a JSON object"),
        ({"json": {}}, 400, "missing field 'message'"),
        ({"json": {"message": 42}}, 400, "field 'message' must be str"),
        ({"json": {"message": "   "}}, 400, "message is empty"),
        ({"json": {"message": "x" * 1001}}, 400, "the limit is 1000"),
        ({"json": {"message": "x" * 20_000}}, 413, "the limit is 16000"),
        ({"json": {"message": "hi", "session_id": "../etc"}}, 400, "32-character hex id"),
        ({"json": {"message": "hi", "session_id": "f" * 32}}, 404, "unknown or expired session"),
        ({"json": {"message": "hi", "faq_id": 3}}, 400, "faq_id must be a string"),
    ],
)
def test_bad_chat_requests_get_a_json_error(client, kwargs: dict, status: int, needle: str) -> None:
    response = client.post("/api/chat", **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert needle in body["message"] and body["error"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_routes_and_methods_answer_json(client) -> None:
    assert client.get("/api/chat").get_json()["error"] == "method_not_allowed"
    assert client.get("/api/nothing").get_json()["error"] == "not_found"
    assert client.get("/api/sessions/not-a-session").status_code == 404


def test_admin_needs_the_bearer_token(make_app, admin_headers) -> None:
    client = make_app().test_client()
    assert client.get("/api/kb").status_code == 401
    assert client.get("/api/kb", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/api/kb", headers=admin_headers).status_code == 200
    disabled = make_app(admin_token=None).test_client()
    assert disabled.get("/api/kb", headers=admin_headers).status_code == 503


def test_rate_limit_answers_429_per_client(make_app) -> None:
    client = make_app(rate_limit_per_minute=4).test_client()
    assert chat(client, "Is shipping free?").status_code == 200
    limited = chat(client, "Is shipping free?")
    assert limited.status_code == 429
    assert limited.get_json()["retry_after"] > 0
    assert client.get("/healthz").status_code == 200


def test_cors_only_for_configured_origins(make_app) -> None:
    client = make_app(allowed_origins=("https://shop.example",)).test_client()
    allowed = client.post(
        "/api/chat", json={"message": "hi"}, headers={"Origin": "https://shop.example"}
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    other = client.post(
        "/api/chat", json={"message": "hi"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = client.options("/api/chat", headers={"Origin": "https://shop.example", **preflight})
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"]
    denied = client.options("/api/chat", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_health_and_metrics(client) -> None:
    health = client.get("/healthz").get_json()
    assert health["status"] == "ok" and health["faqs"] == 44 and health["redis"] == "ok"
    chat(client, "Is shipping free?")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'qa_replies_total{outcome="answer",reason="answered"} 1.0' in metrics
    assert "http_request_duration_seconds" in metrics


def test_admin_edits_are_served_at_once_and_can_be_rolled_back(client, admin_headers) -> None:
    start = client.get("/api/kb/versions", headers=admin_headers).get_json()["current"]
    entry = {
        "id": "rentals",
        "questions": ["Do you rent furniture?", "Can I lease a sofa?"],
        "answer": "We do not rent furniture yet.",
        "category": "Products",
    }
    created = client.post("/api/kb", json=entry, headers=admin_headers)
    assert created.status_code == 201 and created.json["embedded"] == 3
    assert chat(client, "can I rent a couch").json["faq_id"] == "rentals"
    assert client.post("/api/kb", json=entry, headers=admin_headers).status_code == 409
    replaced = client.put(
        "/api/kb/rentals", json={**entry, "answer": "Rentals start in May."}, headers=admin_headers
    )
    assert (replaced.json["embedded"], replaced.json["reused"]) == (1, 2)
    assert chat(client, "can I rent a couch").json["answer"] == "Rentals start in May."
    assert (
        client.get("/api/kb/rentals", headers=admin_headers).json["answer"]
        == "Rentals start in May."
    )
    invalid = client.put("/api/kb/rentals", json={"questions": []}, headers=admin_headers)
    assert invalid.status_code == 400 and "questions" in invalid.json["message"]
    assert client.delete("/api/kb/rentals", headers=admin_headers).status_code == 200
    assert chat(client, "can I rent a couch").json["faq_id"] != "rentals"
    assert client.delete("/api/kb/rentals", headers=admin_headers).status_code == 404
    rolled = client.post("/api/kb/rollback", headers=admin_headers).get_json()["version"]
    assert chat(client, "can I rent a couch").json["answer"] == "Rentals start in May."
    versions = client.get("/api/kb/versions", headers=admin_headers).get_json()
    assert versions["serving"] == versions["current"] == rolled
    assert len(versions["versions"]) == 4 and versions["history"][0] == start
    assert client.post("/api/kb/reload", headers=admin_headers).get_json()["version"] == rolled


def test_empty_bot_dir_is_built_from_the_kb_at_start_up(make_app, embedder, tmp_path: Path) -> None:
    from threefold.apps.qa.cli import ensure_bot
    from threefold.apps.qa.config import SAMPLE_KB, QAConfig

    ensure_bot(QAConfig(bot_dir=str(tmp_path / "fresh"), kb_path=str(SAMPLE_KB)), embedder)
    client = make_app(bot_dir=str(tmp_path / "fresh"), kb_path=str(SAMPLE_KB)).test_client()
    assert client.get("/healthz").get_json()["faqs"] == 44
    assert BotStore(tmp_path / "fresh").current_version() is not None


def test_empty_bot_dir_without_kb_says_how_to_fix_it(make_app, tmp_path: Path) -> None:
    from threefold.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no bot in .*threefold qa build"):
        make_app(bot_dir=str(tmp_path / "none"), kb_path=None)


def test_demo_page_embeds_the_widget_with_one_script_tag(client) -> None:
    page = client.get("/demo").get_data(as_text=True)
    assert page.count("<script") == 1 and 'src="/static/widget.js"' in page
    widget = client.get("/static/widget.js")
    assert widget.status_code == 200 and "customElements.define" in widget.get_data(as_text=True)
    assert "innerHTML" not in widget.get_data(as_text=True)


def test_without_redis_it_answers_from_memory_and_reports_degraded(make_app, admin_headers) -> None:
    client = make_app(redis_url=None).test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "degraded" and body["redis"] == "not configured"
    assert "set REDIS_URL" in body["reason"] and body["faqs"] == 44
    first = chat(client, "Is shipping free?").get_json()
    assert first["faq_id"] == "shipping_cost"
    history = client.get(f"/api/sessions/{first['session_id']}").get_json()
    assert [t["role"] for t in history["turns"]] == ["user", "bot"]
    rating = {"session_id": first["session_id"], "turn_id": first["turn_id"], "rating": "up"}
    assert client.post("/api/feedback", json=rating).status_code == 201
    exported = client.get("/api/admin/feedback.csv", headers=admin_headers).get_data(as_text=True)
    assert [r["rating"] for r in csv.DictReader(io.StringIO(exported))] == ["up"]


def test_unreachable_redis_is_reported_degraded(make_app) -> None:
    from threefold.streaming.services import free_port

    client = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["redis"] == "unreachable"


def test_small_talk_gets_a_canned_reply_and_never_counts_as_a_failure(client) -> None:
    first = chat(client, "Hi there!").get_json()
    assert (first["outcome"], first["reason"]) == ("small_talk", "greeting")
    assert "I can help with" in first["reply"] and first["suggestions"] == []
    session_id = first["session_id"]
    assert chat(client, "Is shipping free?", session_id=session_id).get_json()["answer"]
    for message in ("ok thanks", "thank you!", "great"):
        body = chat(client, message, session_id=session_id).get_json()
        assert body["outcome"] == "small_talk" and body["handoff"] is False
    assert chat(client, "bye", session_id=session_id).get_json()["reason"] == "goodbye"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'qa_replies_total{outcome="small_talk",reason="thanks"} 2.0' in metrics


def test_a_suggestion_removed_since_it_was_shown_is_answered_from_its_text(client) -> None:
    """The widget sends the suggestion's question with its faq_id; a 400 'unknown faq_id'
    reached the customer as 'that message could not be answered'."""
    body = chat(client, "Is shipping free?", faq_id="removed_meanwhile").get_json()
    assert (body["outcome"], body["faq_id"]) == ("answer", "shipping_cost")


def test_a_no_after_an_answer_or_anything_else_is_no_new_answer_and_no_failure(
    client, make_app, store_intent_bot, publish_copy, tmp_path: Path
) -> None:
    """'no' was read as a follow-up of the last question (another FAQ answered), or, after
    'Anything else?', as an out-of-scope question counted towards a handoff."""
    publish_copy(store_intent_bot, tmp_path / "intent")
    intent_client = make_app(bot_dir=str(tmp_path / "intent")).test_client()
    for bot in (client, intent_client):
        session_id = chat(bot, "Is shipping free?").get_json()["session_id"]
        for message in ("no", "thanks", "nope", "no thanks", "no", "no"):
            body = chat(bot, message, session_id=session_id).get_json()
            assert body["outcome"] == "small_talk", (message, body)
            assert body["handoff"] is False and body["answer"] is None
        assert "talk to a person" in body["reply"]


def test_intent_bot_answers_declines_and_chats_through_the_api(
    make_app, store_intent_bot, publish_copy, tmp_path: Path
) -> None:
    publish_copy(store_intent_bot, tmp_path / "intent")
    client = make_app(bot_dir=str(tmp_path / "intent")).test_client()
    answer = chat(client, "how many business days does delivery take").get_json()
    assert (answer["outcome"], answer["faq_id"]) == ("answer", "shipping_time")
    declined = chat(client, "what's the weather in Paris tomorrow").get_json()
    assert declined["outcome"] == "out_of_scope" and "I can help with" in declined["reply"]
    thanks = chat(client, "ok thanks", session_id=declined["session_id"]).get_json()
    assert thanks["outcome"] == "small_talk" and thanks["handoff"] is False
