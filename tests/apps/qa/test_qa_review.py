"""The review queue on the embedded Redis: signals with provenance in, KB edits out, audited."""

from __future__ import annotations

import json

import pytest

from threefold.apps.qa.feedback import FeedbackStore, MemoryRecordLog
from threefold.apps.qa.knowledge_base import FaqEntry, KnowledgeBase
from threefold.apps.qa.review import (
    ReviewItem,
    ReviewQueue,
    cluster,
    questions_of_other_faqs,
    with_paraphrases,
)

pytestmark = pytest.mark.integration
TOKENS = "alice:tok-alice-1"
ALICE = {"Authorization": "Bearer tok-alice-1"}
DECLINED = "my box got eaten by the dog, what now"  # the store bot declines it (out of scope)


def chat(client, message: str, **extra: object) -> dict:
    response = client.post("/api/chat", json={"message": message, **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def queue(client, admin_headers) -> dict:
    response = client.get("/api/review", headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def group_of(listing: dict, question: str) -> dict:
    return next(g for g in listing["groups"] if question in g["questions"])


@pytest.fixture
def app(make_app):
    return make_app(agent_tokens=TOKENS, follow_pointer_s=0)


@pytest.fixture
def client(app):
    return app.test_client()


def item(question: str, n: int = 0) -> ReviewItem:
    return ReviewItem(id=f"i{n}", kind="unanswered", ts=float(n), session_id="s", question=question)


def test_declined_questions_cluster_by_meaning(store_bot) -> None:
    items = [
        item("do you take bitcoin", 0),
        item("can I pay with bitcoin", 1),
        item("can a drone drop my order", 2),
        item("bitcoin payments accepted?", 3),
    ]
    groups = [[i.question for i in g] for g in cluster(store_bot, items)]
    assert groups == [
        ["do you take bitcoin", "can I pay with bitcoin", "bitcoin payments accepted?"],
        ["can a drone drop my order"],
    ]


def test_paraphrases_are_added_once(store_kb) -> None:
    entry = with_paraphrases(store_kb, "po_box", ["Do you deliver to post office boxes?", " x? "])
    assert entry.questions == (*store_kb["po_box"].questions, "x?")


def test_a_question_an_faq_has_already_is_not_another_faqs() -> None:
    """A KB saved with a question under two FAQs (the load warns) stays editable: each FAQ
    keeps its own questions; only questions new to it that another FAQ has are taken."""
    shared = KnowledgeBase(
        [
            FaqEntry(id="a", questions=("Where is my order?",), answer="A."),
            FaqEntry(id="b", questions=("where is my  ORDER?", "Track it?"), answer="B."),
        ]
    )
    assert questions_of_other_faqs(shared, ["Where is my order?"], "a") == {}
    assert questions_of_other_faqs(shared, ["Where is my order?"], "b") == {}
    assert questions_of_other_faqs(shared, [" track IT? ", "New?"], "a") == {"track IT?": "b"}


def test_reviewed_and_dismissed_items_leave_the_queue() -> None:
    feedback = FeedbackStore(MemoryRecordLog())
    for n, question in enumerate(["a?", "b?"]):
        feedback.log_unanswered(
            session_id=f"s{n}", question=question, reason="out_of_scope", confidence=0.1,
            candidates=[], bot_version="v1",
        )  # fmt: skip
    feedback.log_unanswered(
        session_id="s3", question="talk to a person", reason="requested", confidence=0.0,
        candidates=[],
    )  # fmt: skip
    review = ReviewQueue(feedback)
    first, second = review.pending()  # not the request for a person: no gap in the KB
    assert (first.question, first.bot_version, first.details["reason"]) == (
        "a?",
        "v1",
        "out_of_scope",
    )
    review.mark_reviewed([first], action="dismiss", who="admin")
    assert [i.id for i in review.pending()] == [second.id]
    with pytest.raises(ValueError, match="not in the queue"):
        review.find([first.id])
    vote = {"session_id": "s", "turn_id": "t", "faq_id": "f", "question": "q?", "answer": "a"}
    feedback.record_feedback(rating="down", **vote)
    assert [i.kind for i in review.pending()] == ["unanswered", "thumbs_down"]
    feedback.record_feedback(rating="up", **vote)  # one vote per answer: the second replaces it
    assert [i.kind for i in review.pending()] == ["unanswered"]


def test_signals_carry_provenance(client, app, admin_headers) -> None:
    """Unanswered questions name the declining version; agents' replies are logged, masked."""
    declined = chat(client, DECLINED)
    assert declined["outcome"] == "out_of_scope" and declined["bot_version"]
    unsure = chat(client, "my parcel arrived soaked in rain")
    assert (unsure["outcome"], unsure["reason"]) == ("clarify", "low_confidence")
    handed = chat(client, "I need to talk to a person, my email is ann@example.com")
    session_id = handed["session_id"]
    for route in ("claim", "messages"):
        body = {"json": {"text": "Sure - write to help@shop.test or call +1 415 555 0100"}}
        response = client.post(
            f"/api/agent/conversations/{session_id}/{route}",
            headers=ALICE,
            **(body if route == "messages" else {}),
        )
        assert response.status_code in (200, 201), response.get_json()
    feedback = app.extensions["threefold.qa"].feedback
    unanswered, low, _handoff = feedback.unanswered()
    assert unanswered["question"] == DECLINED
    assert unanswered["bot_version"] == declined["bot_version"]
    assert unanswered["reason"] == "out_of_scope" and unanswered["session_id"]
    assert (low["reason"], low["bot_version"]) == ("low_confidence", unsure["bot_version"])
    (reply,) = feedback.agent_replies()
    assert reply["agent"] == "alice" and reply["session_id"] == session_id
    assert reply["question"] == "I need to talk to a person, my email is [email]"
    assert reply["reply"] == "Sure - write to [email] or call [phone]"
    assert reply["ts"] > 0 and reply["turn_id"]


def test_every_reply_names_the_bot_version(client) -> None:
    version = chat(client, "How do I track my order?")["bot_version"]
    assert version
    for message in ("hello", DECLINED, "talk to a person", "are you still there?"):
        assert chat(client, message)["bot_version"] == version


def test_a_declined_question_reviewed_into_a_paraphrase_is_answered_by_a_named_version(
    client, app, admin_headers
) -> None:
    """The acceptance loop: declined -> review API -> paraphrase -> answered, version named."""
    declined = chat(client, DECLINED)
    assert declined["outcome"] == "out_of_scope" and declined["answer"] is None
    group = group_of(queue(client, admin_headers), DECLINED)
    assert group["kind"] == "unanswered"
    assert group["items"][0]["bot_version"] == declined["bot_version"]
    assert group["suggested_faq"]["faq_id"] == "damaged_item"

    response = client.post(
        "/api/review/paraphrase",
        headers=admin_headers,
        json={"items": group["item_ids"], "faq_id": "damaged_item"},
    )
    assert response.status_code == 200, response.get_json()
    edited = response.get_json()
    assert edited["added"] == [DECLINED] and edited["version"] != declined["bot_version"]
    assert all(DECLINED not in g["questions"] for g in queue(client, admin_headers)["groups"])

    manager = app.extensions["threefold.qa"].manager
    assert manager.wait_for_retrain(timeout=300)  # the calibration refitted on the edited KB
    store = manager.store
    recalibrated = store.current_version()
    assert store.entry.info(edited["version"])["created_by"] == "kb edit by admin (review)"
    assert store.entry.info(recalibrated)["parent"] == edited["version"]
    answered = chat(client, DECLINED)
    assert answered["outcome"] == "answer" and answered["faq_id"] == "damaged_item"
    assert answered["bot_version"] == recalibrated != declined["bot_version"]
    audit = [
        json.loads(r) for r in app.extensions["threefold.qa"].redis.lrange(
            app.extensions["threefold.qa"].config.redis_prefix + "audit", 0, -1
        )
    ]  # fmt: skip
    assert [a["action"] for a in audit] == ["review.paraphrase"]


def test_thumbs_down_and_agent_replies_become_a_new_faq_or_are_dismissed(
    client, app, admin_headers
) -> None:
    answered = chat(client, "How do I track my order?")
    vote = {"session_id": answered["session_id"], "turn_id": answered["turn_id"]}
    assert client.post("/api/feedback", json={**vote, "rating": "down"}).status_code == 201
    session_id = chat(client, "talk to a person please, can I pay in bitcoin?")["session_id"]
    client.post(f"/api/agent/conversations/{session_id}/claim", headers=ALICE)
    client.post(
        f"/api/agent/conversations/{session_id}/messages",
        headers=ALICE,
        json={"text": "We do not take crypto; cards, PayPal and gift cards only."},
    )
    listing = queue(client, admin_headers)
    down = next(g for g in listing["groups"] if g["kind"] == "thumbs_down")
    assert down["items"][0]["faq_id"] == "track_order"
    assert down["items"][0]["answer"] == answered["answer"]
    assert down["items"][0]["bot_version"] == answered["bot_version"]
    reply = next(g for g in listing["groups"] if g["kind"] == "agent_reply")
    assert reply["items"][0]["agent"] == "alice"
    assert {"id": "track_order", "question": "How do I track my order?"} in listing["faqs"]

    created = client.post(
        "/api/review/new-faq",
        headers=admin_headers,
        json={
            "items": reply["item_ids"],
            "id": "crypto",
            "questions": ["Can I pay with bitcoin?"],
            "answer": reply["items"][0]["reply"],
            "category": "Payments",
        },
    )
    assert created.status_code == 201, created.get_json()
    kb = client.get("/api/kb/crypto", headers=admin_headers).get_json()
    assert kb["answer"] == "We do not take crypto; cards, PayPal and gift cards only."
    dismissed = client.post(
        "/api/review/dismiss", headers=admin_headers, json={"items": down["item_ids"]}
    )
    assert dismissed.get_json() == {"reviewed": 1}
    kinds = {g["kind"] for g in queue(client, admin_headers)["groups"]}
    assert "thumbs_down" not in kinds and "agent_reply" not in kinds
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'qa_review_actions_total{action="new_faq"} 1.0' in metrics
    assert 'qa_review_actions_total{action="dismiss"} 1.0' in metrics
    assert "qa_reviewed_items_total 2.0" in metrics


def test_review_api_errors(client, admin_headers) -> None:
    assert client.get("/api/review").status_code == 401
    assert client.post("/api/review/dismiss", json={"items": []}).status_code == 401
    chat(client, DECLINED)
    group = queue(client, admin_headers)["groups"][0]
    cases = [
        ("dismiss", {"items": "abc"}, 400, "must be a non-empty list of review item ids"),
        ("dismiss", {"items": ["nope"]}, 409, "not in the queue"),
        ("paraphrase", {"items": group["item_ids"], "faq_id": "nope"}, 404, "no FAQ with id"),
        (
            "paraphrase",
            {"items": group["item_ids"], "faq_id": "po_box", "questions": [""]},
            400,
            "questions[0] must be non-empty text",
        ),
        (
            "paraphrase",
            {"items": group["item_ids"], "faq_id": "po_box", "questions": ["\u200b"]},
            400,
            "questions[0] must be non-empty text with a visible character",
        ),
        (
            "paraphrase",
            {"items": group["item_ids"], "faq_id": 5},
            400,
            "'faq_id' must be an FAQ id (a JSON string), found int 5",
        ),
        ("new-faq", {"items": group["item_ids"], "id": "po_box", "answer": "x"}, 409, "exists"),
        (
            "paraphrase",
            {"items": group["item_ids"], "faq_id": "po_box", "questions": ["is SHIPPING free?"]},
            409,
            "is already a question of FAQ 'shipping_cost'. Fix: add the items to 'shipping_cost'",
        ),
        (
            "new-faq",
            {
                "items": group["item_ids"],
                "id": "free",
                "answer": "x",
                "questions": ["Is shipping free?"],
            },
            409,
            "already a question of FAQ 'shipping_cost'",
        ),
        ("new-faq", {"items": group["item_ids"], "id": "x"}, 400, "'answer' must be"),
    ]
    for route, body, status, needle in cases:
        response = client.post(f"/api/review/{route}", headers=admin_headers, json=body)
        assert response.status_code == status, (route, body, response.get_json())
        assert needle in response.get_json()["message"]
    for limit in ("0", "²", "1001", "x"):
        response = client.get(f"/api/review?limit={limit}", headers=admin_headers)
        assert response.status_code == 400 and "limit must be" in response.get_json()["message"]
    assert queue(client, admin_headers)["groups"][0]["item_ids"] == group["item_ids"]
