"""Privacy, retention, audit, addressable ids and version pruning of the QA bot (real Redis)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from threefold.core.web import JsonLogFormatter

pytestmark = pytest.mark.integration

PERSONAL = "my email is jane@example.com and card 4111 1111 1111 1111, zzkq wibble?"


def test_personal_data_is_masked_in_every_stored_record(
    make_app, redis_client, redis_prefix: str
) -> None:
    client = make_app(record_ttl_days=7).test_client()
    reply = client.post("/api/chat", json={"message": PERSONAL}).get_json()
    assert reply["outcome"] != "answer"  # logged as unanswered
    client.post(
        "/api/feedback",
        json={
            "session_id": reply["session_id"],
            "turn_id": reply["turn_id"],
            "rating": "down",
            "comment": "call me on +1 415 555 0134, ssn 078-05-1120",
        },
    )
    stored = b" ".join(
        [
            redis_client.get(f"{redis_prefix}session:{reply['session_id']}"),
            *redis_client.lrange(f"{redis_prefix}unanswered", 0, -1),
            *redis_client.lrange(f"{redis_prefix}feedback", 0, -1),
        ]
    ).decode()
    # timestamps, scores, random hex ids and bot version names may hold 4111 by chance
    without_numbers = re.sub(r"\d+\.\d+|\b[0-9a-f]{32}\b|\d{4}-\d{8}T\d{6}", "", stored)
    for secret in ("jane@example.com", "4111", "555 0134", "078-05-1120"):
        assert secret not in without_numbers
    assert "[email]" in stored and "[card]" in stored and "[national-id]" in stored
    for name in ("unanswered", "feedback"):
        assert 0 < redis_client.ttl(f"{redis_prefix}{name}") <= 7 * 86_400
    assert 0 < redis_client.ttl(f"{redis_prefix}session:{reply['session_id']}") <= 1800


def test_record_logs_are_capped_by_the_operator(make_app, redis_client, redis_prefix) -> None:
    client = make_app(record_max_entries=3).test_client()
    for i in range(5):
        client.post("/api/chat", json={"message": f"zzkq wibble {i}?"})
    assert redis_client.llen(f"{redis_prefix}unanswered") == 3


def test_admin_actions_are_audited_and_tokens_never_logged(
    make_app, redis_client, redis_prefix: str, admin_headers, caplog
) -> None:
    client = make_app().test_client()
    entry = {"id": "gift_wrap_audit", "question": "Do you gift wrap?", "answer": "Yes, for $3."}
    with caplog.at_level(logging.INFO):
        assert client.post("/api/kb", json=entry, headers=admin_headers).status_code == 201
        assert client.delete("/api/kb/gift_wrap_audit", headers=admin_headers).status_code == 200
        client.get("/api/kb?token=test-admin-token", headers=admin_headers)
    records = [json.loads(r) for r in redis_client.lrange(f"{redis_prefix}audit", 0, -1)]
    assert [(r["who"], r["action"], r["faq_id"]) for r in records] == [
        ("admin", "kb.create", "gift_wrap_audit"),
        ("admin", "kb.delete", "gift_wrap_audit"),
    ]
    assert all(r["ts"] > 0 and r["version"] for r in records)
    audit_lines = [r for r in caplog.records if r.name == "threefold.audit"]
    assert len(audit_lines) == 2
    lines = "\n".join(JsonLogFormatter().format(r) for r in caplog.records)
    assert '"path": "/api/kb"' in lines  # the access log line of the GET
    assert "test-admin-token" not in lines


@pytest.mark.parametrize("faq_id", ["a/b", "versions", "..", "what?", "100%"])
def test_ids_the_url_cannot_reach_are_refused_on_create(make_app, admin_headers, faq_id) -> None:
    client = make_app().test_client()
    entry = {"id": faq_id, "question": "Do you gift wrap?", "answer": "Yes."}
    response = client.post("/api/kb", json=entry, headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json()["field"] == "id"
    assert "cannot be used in the URL" in response.get_json()["message"]


@pytest.mark.parametrize(
    ("faq_id", "found"),
    [
        ("zw\u200bid", "U+200B ZERO WIDTH SPACE (an invisible format character)"),
        ("\u202eevil", "U+202E RIGHT-TO-LEFT OVERRIDE (an invisible format character)"),
        ("\ufeffbom", "U+FEFF ZERO WIDTH NO-BREAK SPACE (an invisible format character)"),
        ("nul\x00id", "U+0000 (a control character)"),
    ],
)
def test_ids_with_invisible_characters_are_refused_saying_what_is_allowed(
    make_app, admin_headers, faq_id: str, found: str
) -> None:
    client = make_app().test_client()
    before = client.get("/api/kb", headers=admin_headers).get_json()["count"]
    entry = {"id": faq_id, "question": "Do you gift wrap?", "answer": "Yes."}
    response = client.post("/api/kb", json=entry, headers=admin_headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "id"
    assert found in body["message"] and "an id is 1 to 128 letters" in body["message"]
    assert client.get("/api/kb", headers=admin_headers).get_json()["count"] == before


def test_composed_and_decomposed_ids_are_one_faq(make_app, admin_headers) -> None:
    client = make_app().test_client()
    entry = {"question": "Do you sell coffee?", "answer": "Yes, in the caf\u00e9."}
    assert (
        client.post("/api/kb", json={"id": "caf\u00e9", **entry}, headers=admin_headers).status_code
        == 201
    )
    twin = client.post("/api/kb", json={"id": "cafe\u0301", **entry}, headers=admin_headers)
    assert twin.status_code == 409
    for spelling in ("caf%C3%A9", "cafe%CC%81"):
        found = client.get(f"/api/kb/{spelling}", headers=admin_headers)
        assert found.status_code == 200 and found.get_json()["id"] == "caf\u00e9"


@pytest.mark.parametrize(
    ("entry", "status", "field", "needle"),
    [
        ({"id": 5}, 400, "id", "'id' must be text (a JSON string), found int 5"),
        ({"question": "\u0000"}, 400, "questions", "must be non-empty text with a visible"),
        ({"question": "q" * 100_000}, 400, "questions", "at most 1,000 are allowed"),
        ({"answer": "a" * 500_000}, 400, "answer", "at most 20,000 are allowed"),
    ],
)
def test_entries_breaking_the_contract_are_refused(
    make_app, admin_headers, entry: dict, status: int, field: str, needle: str
) -> None:
    client = make_app().test_client()
    body = {"id": "gift_wrap", "question": "Do you gift wrap?", "answer": "Yes.", **entry}
    response = client.post("/api/kb", json=body, headers=admin_headers)
    assert response.status_code == status
    assert response.get_json()["field"] == field and needle in response.get_json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/kb/reload", "POST"),
        ("DELETE", "/api/kb/rollback", "POST"),
        ("PUT", "/api/kb/versions", "GET"),
    ],
)
def test_other_methods_on_the_kb_endpoints_are_405(
    make_app, admin_headers, method: str, path: str, allowed: str
) -> None:
    client = make_app().test_client()
    response = client.open(path, method=method, headers=admin_headers, json={"answer": "x"})
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.get_json()["error"] == "method_not_allowed"


def test_a_put_to_an_id_with_spaces_around_it_is_refused(make_app, admin_headers) -> None:
    """It would be stored trimmed, and GET /api/kb/<the URL id> would then be a 404."""
    client = make_app().test_client()
    entry = {"question": "Do you gift wrap?", "answer": "Yes."}
    response = client.put("/api/kb/%20gift_wrap", json=entry, headers=admin_headers)
    assert response.status_code == 400
    assert "use PUT /api/kb/gift_wrap" in response.get_json()["message"]
    assert client.put("/api/kb/gift_wrap", json=entry, headers=admin_headers).status_code == 200


def test_kb_versions_are_pruned_to_the_configured_count(make_app, admin_headers) -> None:
    client = make_app(kb_versions_kept=2).test_client()
    for i in range(4):
        entry = {"id": f"extra_{i}", "question": f"Question {i}?", "answer": f"Answer {i}."}
        assert client.post("/api/kb", json=entry, headers=admin_headers).status_code == 201
    versions = client.get("/api/kb/versions", headers=admin_headers).get_json()
    assert len(versions["versions"]) == 2
    assert versions["current"] == versions["versions"][-1] == versions["serving"]
    assert set(versions["history"]) <= set(versions["versions"])
    assert client.post("/api/kb/rollback", headers=admin_headers).status_code == 200


def test_a_question_of_one_faq_cannot_be_given_to_another(make_app, admin_headers) -> None:
    """Two FAQs sharing a question contradict each other: the bot, sure of it before, would ask
    the customer to choose. The review API refuses it; so do the admin's create and PUT."""
    client = make_app().test_client()
    shipping = "how much does  SHIPPING cost?"  # shipping_cost's, case and spacing aside
    taken = {"questions": [shipping], "answer": "Contradicting."}
    po_box = {"questions": ["Can you ship to a PO box?", shipping], "answer": "Yes."}
    for method, path, body in (
        ("POST", "/api/kb", {"id": "x5", **taken}),
        ("PUT", "/api/kb/x5", taken),
        ("PUT", "/api/kb/po_box", po_box),
    ):
        response = client.open(path, method=method, json=body, headers=admin_headers)
        assert response.status_code == 409, (method, path, response.get_json())
        refused = response.get_json()
        assert (refused["error"], refused["faq_id"]) == ("question_in_another_faq", "shipping_cost")
        assert "is already a question of FAQ 'shipping_cost'" in refused["message"]
        assert "PUT /api/kb/shipping_cost" in refused["message"]
    assert client.get("/api/kb/x5", headers=admin_headers).status_code == 404
    own = client.get("/api/kb/shipping_cost", headers=admin_headers).get_json()
    kept = client.put(
        "/api/kb/shipping_cost", json={**own, "answer": "Free over $50."}, headers=admin_headers
    )
    assert kept.status_code == 200, kept.get_json()  # its own questions are not another's
    reply = client.post("/api/chat", json={"message": "How much does shipping cost?"}).get_json()
    assert (reply["outcome"], reply["faq_id"], reply["answer"]) == (
        "answer",
        "shipping_cost",
        "Free over $50.",
    )
