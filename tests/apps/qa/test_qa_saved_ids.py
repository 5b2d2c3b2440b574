"""FAQ ids saved before the id rule (decomposed, NFD) stay reachable through the admin and review
APIs: a URL or body id finds the stored entry exactly, else by NFC-equivalence (real Redis)."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask

from threefold.apps.qa.knowledge_base import FaqEntry, KnowledgeBase
from threefold.apps.qa.resources import EXTENSION_KEY
from threefold.apps.qa.store import BotStore

NFD = unicodedata.normalize("NFD", "caf\u00e9_hours")  # allowed, as given, by the old rule
NFC = unicodedata.normalize("NFC", NFD)
CAFE = FaqEntry(id=NFD, questions=("When is the cafe open?",), answer="9 to 5.")
RETURNS = FaqEntry(id="returns", questions=("How do I return shoes?",), answer="Within 30 days.")
# allowed when saved, refused by today's rule (`core.ids`, and '#' for FAQ ids)
GIFT_CARDS = FaqEntry(id="gift\u00a0cards", questions=("Do you sell gift cards?",), answer="Yes.")
FAQ_7 = FaqEntry(id="faq#7", questions=("Can I pay in installments?",), answer="Not yet.")


def test_an_id_resolves_exactly_first_then_by_nfc_equivalence() -> None:
    kb = KnowledgeBase([CAFE, RETURNS])
    assert kb.resolve_id(NFD) == NFD
    assert kb.resolve_id(NFC) == NFD  # the stored spelling, found by either
    assert kb.resolve_id("returns") == "returns"
    assert kb.resolve_id("caf\u00e9") is None and kb.resolve_id(" returns") is None
    twins = KnowledgeBase([CAFE, FaqEntry(id=NFC, questions=("Q?",), answer="A.")])  # saved so
    assert (twins.resolve_id(NFD), twins.resolve_id(NFC)) == (NFD, NFC)


@pytest.fixture
def old_ids_bot_dir(tmp_path: Path, embedder) -> Path:
    """A bot directory whose version was saved with ids today's id rule refuses."""
    from threefold.apps.qa.builder import BuildOptions, build_bot

    root = tmp_path / "old-ids-bot"
    kb = KnowledgeBase([GIFT_CARDS, FAQ_7, RETURNS])
    BotStore(root).publish(build_bot(kb, embedder, BuildOptions(intent_model=False)))
    return root


@pytest.mark.integration
@pytest.mark.parametrize("old", [GIFT_CARDS, FAQ_7], ids=["no-break space", "hash"])
def test_an_faq_saved_under_an_id_the_rule_now_refuses_can_be_edited(
    make_app, old_ids_bot_dir: Path, admin_headers, old: FaqEntry
) -> None:
    """The id rule applies to new ids: the operator can still read, edit and delete it."""
    app = make_app(bot_dir=str(old_ids_bot_dir))
    client = app.test_client()
    url = f"/api/kb/{quote(old.id)}"
    assert client.get(url, headers=admin_headers).get_json()["answer"] == old.answer
    body = {"question": old.question, "answer": "Updated answer."}
    for sent in (body, {**body, "id": old.id}):
        edited = client.put(url, json=sent, headers=admin_headers)
        assert edited.status_code == 200, edited.get_json()
    assert client.get(url, headers=admin_headers).get_json()["answer"] == "Updated answer."
    assert _ids(app) == [GIFT_CARDS.id, FAQ_7.id, "returns"]  # the stored id kept, in place
    refused = client.put(url, json={"question": "", "answer": "x"}, headers=admin_headers)
    assert refused.status_code == 400 and refused.get_json()["field"] == "questions"
    other = client.put(url, json={**body, "id": "returns"}, headers=admin_headers)
    assert other.status_code == 400 and "differs from the URL id" in other.get_json()["message"]
    assert client.delete(url, headers=admin_headers).status_code == 200
    assert client.put(url, json=body, headers=admin_headers).status_code == 400  # new id now


@pytest.mark.integration
@pytest.mark.parametrize("new_id", ["gift\u00a0wrap", "faq#8"], ids=["no-break space", "hash"])
def test_a_new_id_the_rule_refuses_is_still_a_400_on_put(
    make_app, old_ids_bot_dir: Path, admin_headers, new_id: str
) -> None:
    client = make_app(bot_dir=str(old_ids_bot_dir)).test_client()
    body = {"question": "Do you gift wrap?", "answer": "Yes."}
    refused = client.put(f"/api/kb/{quote(new_id)}", json=body, headers=admin_headers)
    assert refused.status_code == 400 and refused.get_json()["field"] == "id"


@pytest.fixture
def nfd_bot_dir(tmp_path: Path, embedder) -> Path:
    """A bot directory whose version was saved with an FAQ id in decomposed form."""
    from threefold.apps.qa.builder import BuildOptions, build_bot

    root = tmp_path / "nfd-bot"
    kb = KnowledgeBase([CAFE, RETURNS])
    BotStore(root).publish(build_bot(kb, embedder, BuildOptions(intent_model=False)))
    return root


def _ids(app: Flask) -> list[str]:
    """The ids of the KB the app serves now, as stored."""
    return app.extensions[EXTENSION_KEY].manager.bot.kb.ids


@pytest.mark.integration
def test_a_listed_decomposed_id_is_reachable_by_either_spelling(
    make_app, nfd_bot_dir: Path, admin_headers
) -> None:
    client = make_app(bot_dir=str(nfd_bot_dir)).test_client()
    listed = [e["id"] for e in client.get("/api/kb", headers=admin_headers).get_json()["entries"]]
    assert listed == [NFD, "returns"]
    for spelling in (NFD, NFC):
        found = client.get(f"/api/kb/{quote(spelling)}", headers=admin_headers)
        assert found.status_code == 200, found.get_json()
        assert found.get_json()["id"] == NFD
    twin = client.post(
        "/api/kb", json={"id": NFC, "question": "Cafe hours?", "answer": "x"}, headers=admin_headers
    )
    assert twin.status_code == 409 and f"use PUT /api/kb/{NFD}" in twin.get_json()["message"]
    deleted = client.delete(f"/api/kb/{quote(NFC)}", headers=admin_headers)
    assert deleted.status_code == 200, deleted.get_json()
    listing = client.get("/api/kb", headers=admin_headers).get_json()["entries"]
    assert [e["id"] for e in listing] == ["returns"]


@pytest.mark.integration
@pytest.mark.parametrize("url_id", [NFD, NFC], ids=["listed", "composed"])
def test_a_put_replaces_the_stored_entry_keeping_its_spelling(
    make_app, nfd_bot_dir: Path, admin_headers, url_id: str
) -> None:
    app = make_app(bot_dir=str(nfd_bot_dir))
    client = app.test_client()
    body = {"id": NFC, "question": "When is the cafe open?", "answer": "8 to 6 now."}
    replaced = client.put(f"/api/kb/{quote(url_id)}", json=body, headers=admin_headers)
    assert replaced.status_code == 200, replaced.get_json()
    assert _ids(app) == [NFD, "returns"]  # never two FAQs whose ids are NFC-equivalent
    assert client.get(f"/api/kb/{quote(NFD)}", headers=admin_headers).get_json()["answer"] == (
        "8 to 6 now."
    )
    assert (
        client.post("/api/chat", json={"message": "When is the cafe open?"}).get_json()["faq_id"]
        == NFD
    )


@pytest.mark.integration
def test_review_adds_paraphrases_to_the_stored_entry(
    make_app, nfd_bot_dir: Path, admin_headers
) -> None:
    app = make_app(bot_dir=str(nfd_bot_dir), follow_pointer_s=0)
    client = app.test_client()
    declined = client.post("/api/chat", json={"message": "zzkq wibble frobnicate?"}).get_json()
    assert declined["outcome"] != "answer"
    group = client.get("/api/review", headers=admin_headers).get_json()["groups"][0]
    twin = client.post(
        "/api/review/new-faq",
        headers=admin_headers,
        json={"items": group["item_ids"], "id": NFC, "answer": "9 to 5."},
    )
    assert twin.status_code == 409 and twin.get_json()["error"] == "faq_exists"
    assert repr(NFD) in twin.get_json()["message"]
    added = client.post(
        "/api/review/paraphrase",
        headers=admin_headers,
        json={"items": group["item_ids"], "faq_id": NFC, "questions": ["Cafe opening times?"]},
    )
    assert added.status_code == 200, added.get_json()
    assert added.get_json()["faq_id"] == NFD
    assert _ids(app) == [NFD, "returns"]
    stored = client.get(f"/api/kb/{quote(NFD)}", headers=admin_headers).get_json()
    assert stored["questions"] == ["When is the cafe open?", "Cafe opening times?"]
