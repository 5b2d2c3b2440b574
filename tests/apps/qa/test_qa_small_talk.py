"""Small talk: what counts as it (combined clauses, emoji, other languages), the question after
leading small talk, and the canned reply chosen from the previous turn; then through the chat API
on the sample KB (retrieval-only and intent builds)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from threefold.apps.qa import small_talk as small_talk_module
from threefold.apps.qa.bot import Bot
from threefold.apps.qa.small_talk import SmallTalk, without_small_talk


@pytest.fixture(scope="module")
def matcher(embedder) -> SmallTalk:
    return SmallTalk(embedder)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("thank you, bye", "goodbye"),
        ("ok thanks bye!", "goodbye"),
        ("perfect thank you very much for your help", "thanks"),
        ("Thanks again, have a nice day!", "goodbye"),
        ("tks", "thanks"),
        ("see ya", "goodbye"),
        ("hello, good morning", "greeting"),
    ],
)
def test_everyday_phrases_and_their_combinations_are_small_talk(
    matcher: SmallTalk, message: str, kind: str
) -> None:
    assert matcher.match(message) == kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("merci", "thanks"),
        ("Merci beaucoup !", "thanks"),
        ("bonjour", "greeting"),
        ("au revoir", "goodbye"),
        ("gracias", "thanks"),
        ("muchas gracias", "thanks"),
        ("hola", "greeting"),
        ("adiós", "goodbye"),
        ("danke schön", "thanks"),
        ("hallo", "greeting"),
        ("tschüss", "goodbye"),
        ("obrigada", "thanks"),
        ("olá", "greeting"),
        ("tchau", "goodbye"),
        ("grazie mille", "thanks"),
        ("ciao", "greeting"),
        ("arrivederci", "goodbye"),
        ("спасибо", "thanks"),
        ("Спасибо большое!", "thanks"),
        ("привет", "greeting"),
        ("до свидания", "goodbye"),
    ],
)
def test_common_non_english_thanks_greetings_and_goodbyes_are_small_talk(
    matcher: SmallTalk, message: str, kind: str
) -> None:
    assert matcher.match(message) == kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("👍", "acknowledgement"),
        ("👍🏽", "acknowledgement"),
        ("😊", "acknowledgement"),
        ("👌!", "acknowledgement"),
        ("🙏", "thanks"),
        ("❤️", "thanks"),
        ("👋", "greeting"),
        ("👎", "decline"),
        ("thanks 🙏", "thanks"),
    ],
)
def test_common_emoji_reactions_are_small_talk(matcher: SmallTalk, message: str, kind: str) -> None:
    assert matcher.match(message) == kind


@pytest.mark.parametrize("message", ["???", "🤔", "...", "🦄🦄", "?!"])
def test_a_message_without_letters_or_digits_is_always_small_talk(
    matcher: SmallTalk, message: str
) -> None:
    """Nothing to answer and nothing that failed: it asks what the customer needs."""
    assert matcher.match(message) == "no_words"


@pytest.mark.parametrize(
    "message",
    [
        "thank you, where is my order",
        "bye bye how do I return shoes",
        "hi can I pay with paypal",
        "hello, I need a refund",
    ],
)
def test_small_talk_with_a_question_in_it_is_not_small_talk(
    matcher: SmallTalk, message: str
) -> None:
    assert matcher.match(message) is None


@pytest.mark.parametrize(
    ("message", "question"),
    [
        ("hi where's my order", "where's my order"),
        ("hi! where's my order", "where's my order"),
        ("Thanks how do I return shoes?", "how do I return shoes?"),
        ("hello there can I pay with paypal", "can I pay with paypal"),
        ("hola where is my order", "where is my order"),
    ],
)
def test_the_question_after_a_leading_greeting_or_thanks_is_found_without_punctuation(
    message: str, question: str
) -> None:
    assert without_small_talk(message) == question


@pytest.mark.parametrize(
    "message",
    [
        "hi there", "thanks a lot", "hello good morning", "thank you so much", "hi",
        "thanks for your help with my return", "thanks for the info on shipping",
    ],
)  # fmt: skip
def test_small_talk_or_thanks_for_something_is_not_cut_into_a_question(message: str) -> None:
    assert without_small_talk(message) is None


@pytest.mark.parametrize("kind", ["acknowledgement", "decline"])
def test_acknowledgement_and_decline_replies_follow_the_previous_turn(kind: str) -> None:
    template = small_talk_module.reply_template
    assert template(kind, after_answer=False) == "Okay. What can I help you with?"
    assert template(kind, after_answer=True) != template(kind, after_answer=False)
    assert template("acknowledgement", after_answer=True).startswith("Glad that helped")
    assert "didn't cover it" in template("decline", after_answer=True)


def test_other_small_talk_replies_do_not_depend_on_the_previous_turn() -> None:
    template = small_talk_module.reply_template
    for kind in ("greeting", "thanks", "goodbye", "no_words"):
        assert template(kind, after_answer=True) == template(kind, after_answer=False)


# Through POST /api/chat, on the retrieval-only and the intent build of the sample KB.


def chat(client, message: str, **extra: object) -> dict:
    response = client.post("/api/chat", json={"message": message, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture(params=["retrieval", "intent"])
def client(request, make_app, store_intent_bot: Bot, publish_copy, tmp_path: Path):
    """A chat client of the sample KB, built retrieval-only or with the intent model."""
    if request.param == "retrieval":
        return make_app().test_client()
    publish_copy(store_intent_bot, tmp_path / "intent")
    return make_app(bot_dir=str(tmp_path / "intent")).test_client()


def unanswered(client, admin_headers: dict[str, str]) -> list[dict[str, str]]:
    exported = client.get("/api/admin/unanswered.csv", headers=admin_headers)
    return list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))


@pytest.mark.integration
def test_a_thumbs_up_then_see_ya_after_an_answer_neither_fails_nor_hands_off(
    client, admin_headers: dict[str, str]
) -> None:
    """'👍' got "Sorry, I'm not sure I understood" and 'see ya' then handed off."""
    session_id = chat(client, "Is shipping free?")["session_id"]
    thumbs = chat(client, "👍", session_id=session_id)
    assert (thumbs["outcome"], thumbs["reason"]) == ("small_talk", "acknowledgement")
    assert thumbs["reply"].startswith("Glad that helped") and thumbs["suggestions"] == []
    bye = chat(client, "see ya", session_id=session_id)
    assert (bye["outcome"], bye["reason"], bye["handoff"]) == ("small_talk", "goodbye", False)
    assert unanswered(client, admin_headers) == []


@pytest.mark.integration
def test_everyday_small_talk_in_any_order_never_counts_towards_a_handoff(
    client, admin_headers: dict[str, str]
) -> None:
    messages = [
        "hola", "thank you, bye", "ok thanks bye!", "perfect thank you very much for your help",
        "tks", "see ya", "merci", "gracias", "спасибо", "👍", "🙏", "😊", "???",
    ]  # fmt: skip
    session_id = None
    for message in messages:
        body = chat(client, message, session_id=session_id)
        session_id = body["session_id"]
        assert (body["outcome"], body["handoff"]) == ("small_talk", False), (message, body)
    assert unanswered(client, admin_headers) == []


@pytest.mark.integration
def test_a_greeting_without_punctuation_does_not_hide_the_question(client) -> None:
    """'hi where's my order' asked to rephrase while 'hi! where's my order' was answered."""
    alone = chat(client, "where's my order")
    assert alone["outcome"] == "answer"
    for message in ("hi! where's my order", "hi where's my order"):
        body = chat(client, message)
        assert (body["outcome"], body["faq_id"]) == ("answer", alone["faq_id"]), (message, body)


@pytest.mark.integration
def test_a_question_that_mentions_a_person_is_not_a_handoff_request(client) -> None:
    pickup = chat(client, "I need a person to pick up my order in store, is that ok?")
    assert (pickup["outcome"], pickup["faq_id"]) == ("answer", "store_pickup")
    for message in (
        "Can I get a refund if the person I gifted it to doesn't want it?",
        "want to know if a human checks the returns",
    ):
        assert chat(client, message)["reason"] != "requested", message
    assert chat(client, "I want to speak to an agent")["reason"] == "requested"


@pytest.mark.integration
def test_ok_and_no_get_a_neutral_reply_unless_they_follow_an_answer(client) -> None:
    declined = chat(client, "What is the capital of Australia?")
    assert declined["outcome"] == "out_of_scope"
    ok = chat(client, "ok", session_id=declined["session_id"])
    assert (ok["outcome"], ok["reply"]) == ("small_talk", "Okay. What can I help you with?")
    first = chat(client, "no")
    assert (first["outcome"], first["reply"]) == ("small_talk", "Okay. What can I help you with?")
    answered = chat(client, "Is shipping free?", session_id=first["session_id"])
    assert answered["outcome"] == "answer"
    after = chat(client, "ok", session_id=answered["session_id"])
    assert after["reply"].startswith("Glad that helped")
