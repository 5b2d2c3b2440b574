"""The chat widget in a real headless Chromium: ask, see answers, suggestions, feedback, XSS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.qa_widget import TITLE, ask, open_widget

from threefold.apps.qa.knowledge_base import entry_from_mapping

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_ask_click_a_suggestion_and_give_feedback(
    make_app, live_server, page, screenshot_dir: Path
) -> None:
    app = make_app()
    base = live_server(app)
    dialog = open_widget(page, base)
    assert dialog.get_by_label("Your question").evaluate("e => e === e.getRootNode().activeElement")

    ask(dialog, "Is shipping free?")
    answer = dialog.locator(".msg.bot[data-faq-id='shipping_cost']")
    answer.wait_for()
    assert "Standard shipping is free on orders over $50" in answer.inner_text()
    page.screenshot(path=str(screenshot_dir / "qa_widget_answer.png"))

    ask(dialog, "account")
    suggestions = dialog.get_by_role("group", name="Suggested questions")
    suggestions.wait_for()
    first = suggestions.get_by_role("button").first
    question = first.inner_text()
    entry = next(e for e in app.extensions["threefold.qa"].manager.bot.kb if e.question == question)
    page.screenshot(path=str(screenshot_dir / "qa_widget_suggestions.png"))
    first.click()
    picked = dialog.locator(f".msg.bot[data-faq-id='{entry.id}']")
    picked.wait_for()
    assert picked.inner_text() == entry.answer

    dialog.get_by_role("button", name="Yes, helpful").last.click()
    dialog.get_by_text("Thanks for your feedback!").wait_for()
    stored = app.extensions["threefold.qa"].feedback.feedback()
    assert [(f["rating"], f["faq_id"]) for f in stored] == [("up", entry.id)]
    page.screenshot(path=str(screenshot_dir / "qa_widget_feedback.png"))

    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    launcher = page.get_by_role("button", name=f"Open chat: {TITLE}")
    assert launcher.get_attribute("aria-expanded") == "false"

    page.reload()  # the session id is in localStorage: the conversation comes back
    dialog = open_widget(page, None)
    dialog.locator(f".msg.bot[data-faq-id='{entry.id}']").wait_for()
    restored = dialog.locator(".msg.user").all_inner_texts()
    assert restored == ["Is shipping free?", "account", question]


def test_handoff_notice_is_shown(make_app, live_server, page, screenshot_dir: Path) -> None:
    dialog = open_widget(page, live_server(make_app()))
    ask(dialog, "Can I talk to a real person please?")
    notice = dialog.get_by_role("status")
    notice.wait_for()
    assert "member of our team" in notice.inner_text()
    page.screenshot(path=str(screenshot_dir / "qa_widget_handoff.png"))


def test_after_a_handoff_the_widget_says_its_messages_are_for_a_person(
    make_app, live_server, page
) -> None:
    """`with_person` lets any worker refuse, rather than answer, such a message in an outage."""
    dialog = open_widget(page, live_server(make_app()))
    sent = []
    for message in ("Is shipping free?", "Can I talk to a real person please?"):
        with page.expect_request("**/api/chat") as request:
            ask(dialog, message)
        sent.append(request.value.post_data_json)
        dialog.locator(".msg.bot").nth(len(sent)).wait_for()
    page.wait_for_function(  # the widget has read the conversation's state
        "() => document.querySelector('threefold-chat').agentState?.status === 'waiting'"
    )
    with page.expect_request("**/api/chat") as request:
        ask(dialog, "Are you there?")
    sent.append(request.value.post_data_json)
    assert [body.get("with_person") for body in sent] == [None, None, True]


WIDGET_STATE = """() => {
  const chat = document.querySelector('threefold-chat');
  const notice = chat.shadowRoot.querySelector('.notice');
  return { session: chat.sessionId, agent: chat.agentState, live: chat.live !== null,
           notice: notice.hidden ? null : notice.textContent };
}"""


def test_a_new_session_after_the_old_one_expired_starts_with_the_bot(
    make_app, live_server, page, redis_client, redis_prefix: str
) -> None:
    """The old session's conversation with a person (its notice, its live connection, the
    `with_person` mark) is not carried into the session that replaces it."""
    dialog = open_widget(page, live_server(make_app()))
    ask(dialog, "Can I talk to a real person please?")
    page.wait_for_function(
        "() => document.querySelector('threefold-chat').agentState?.status === 'waiting'"
    )
    before = page.evaluate(WIDGET_STATE)
    assert before["live"] and "member of our team" in before["notice"]
    redis_client.delete(f"{redis_prefix}session:{before['session']}")  # the session expires
    ask(dialog, "Is shipping free?")  # unknown_session: sent again in a new session
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
    after = page.evaluate(WIDGET_STATE)
    assert after["session"] not in (None, before["session"])
    assert (after["agent"], after["live"], after["notice"]) == (None, False, None)
    with page.expect_request("**/api/chat") as request:
        ask(dialog, "How long does delivery take?")
    assert request.value.post_data_json["session_id"] == after["session"]
    assert "with_person" not in request.value.post_data_json


def test_kb_html_is_shown_as_text_never_run(
    make_app, live_server, page, screenshot_dir: Path
) -> None:
    app = make_app()
    hostile = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>'
    app.extensions["threefold.qa"].manager.edit(
        upserts=[
            entry_from_mapping(
                {"id": "xss", "question": "What is the pelican policy?", "answer": hostile}
            )
        ]
    )
    dialog = open_widget(page, live_server(app))
    ask(dialog, "What is the pelican policy?")
    answer = dialog.locator(".msg.bot[data-faq-id='xss']")
    answer.wait_for()
    assert answer.inner_text() == hostile
    assert answer.locator("img, script, b").count() == 0
    ask(dialog, "<img src=y onerror=window.__xss=3>")
    dialog.locator(".msg.user").last.wait_for()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss === undefined")
    page.screenshot(path=str(screenshot_dir / "qa_widget_xss_as_text.png"))


def test_mobile_layout_fills_the_screen(make_app, live_server, browser, screenshot_dir) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 700}, is_mobile=True)
    try:
        page = context.new_page()
        dialog = open_widget(page, live_server(make_app()))
        box = dialog.bounding_box()
        assert box is not None and re.match(r"37\d", str(int(box["width"])))
        page.screenshot(path=str(screenshot_dir / "qa_widget_mobile.png"))
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [(1280, 800), (375, 700)], ids=["desktop", "phone"])
def test_small_talk_and_out_of_scope_replies_in_the_widget(
    make_app, live_server, browser, screenshot_dir: Path, viewport: tuple[int, int]
) -> None:
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        dialog = open_widget(page, live_server(make_app()))
        ask(dialog, "hello!")
        greeting = dialog.locator(".msg.bot[data-outcome='small_talk']")
        greeting.wait_for()
        assert "I can help with" in greeting.inner_text()
        ask(dialog, "what's the weather in Paris tomorrow")
        declined = dialog.locator(".msg.bot[data-outcome='out_of_scope']")
        declined.wait_for()
        assert "talk to a person" in declined.inner_text()
        assert dialog.get_by_role("group", name="Suggested questions").count() == 0
        ask(dialog, "ok thanks")
        dialog.locator(".msg.bot[data-outcome='small_talk']").nth(1).wait_for()
        assert dialog.get_by_role("status").count() == 0  # no handoff for small talk
        page.screenshot(path=str(screenshot_dir / f"qa_widget_outcomes_{width}.png"))
    finally:
        context.close()
