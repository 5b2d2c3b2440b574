"""The chat widget's states in headless Chromium: reload restore, keyboard only, API down."""

from __future__ import annotations

import json
import urllib.request

import pytest
from support.browser import axe_violations, save_screenshot
from support.qa_widget import TITLE, ask, focused_name, open_widget, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
GREETING = "Hi! Ask me anything about orders, shipping, returns or your account."
SHOWS_LATEST = "log => log.scrollHeight - log.scrollTop - log.clientHeight < 2"


def test_reload_restores_greeting_order_votes_and_suggestions(
    make_app, live_server, page, screenshot_dir
) -> None:
    app = make_app()
    dialog = open_widget(page, live_server(app))
    for question in ("Is shipping free?", "How do I track my order?"):
        ask(dialog, question)
        dialog.get_by_role("group", name="Was this answer helpful?").nth(
            0 if question.startswith("Is") else 1
        ).wait_for()
    first_votes = dialog.get_by_role("group", name="Was this answer helpful?").first
    first_votes.get_by_role("button", name="Yes, helpful").click()
    dialog.get_by_text("Thanks for your feedback!").wait_for()
    with page.expect_response("**/api/feedback"):
        first_votes.get_by_role("button", name="No, not helpful").click()  # a change of mind
    ask(dialog, "account")
    dialog.get_by_role("group", name="Suggested questions").wait_for()
    stored = app.extensions["threefold.qa"].feedback.feedback()
    assert [(f["faq_id"], f["rating"]) for f in stored] == [("shipping_cost", "down")]

    # reloaded while the API is down: the widget says the conversation could not be loaded
    # (never an empty chat that silently starts over), then loads it by itself once it is back
    page.route("**/api/sessions/**", lambda route: route.abort("connectionrefused"))
    page.set_viewport_size(PHONE)  # the panel covers the page and is modal
    page.reload()
    dialog = open_widget(page, None)
    unloaded = dialog.locator(".restore-failure")
    unloaded.wait_for()
    assert "earlier messages could not be loaded" in unloaded.inner_text()
    again = dialog.get_by_role("button", name="Load them again")
    assert again.is_visible()
    assert dialog.locator(".msg.user").count() == 0
    # "Load them again" pressed while the API is still down: the failure box is replaced and
    # the focus stays on its new button (before: it fell to the page's <body>)
    pressed = again.element_handle()
    pressed.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("button => !button.isConnected", arg=pressed)
    assert unloaded.count() == 1
    assert focused_name(page) == "Load them again"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.unroute("**/api/sessions/**")
    suggestions = dialog.get_by_role("group", name="Suggested questions")
    suggestions.wait_for(timeout=15_000)
    assert unloaded.count() == 0
    assert focused_name(page) == "Your question"  # its button is gone: on to the question box
    assert dialog.locator(".msg").first.inner_text() == GREETING
    assert dialog.locator(".msg.user").all_inner_texts() == [
        "Is shipping free?",
        "How do I track my order?",
        "account",
    ]
    log = dialog.get_by_role("log", name="Conversation")
    page.wait_for_function(
        f"() => ({SHOWS_LATEST})(document.querySelector('threefold-chat')"
        ".shadowRoot.querySelector('.log'))"
    )
    assert log.evaluate(SHOWS_LATEST)  # opens at the latest message, not the oldest
    votes = dialog.get_by_role("group", name="Was this answer helpful?")
    assert (
        votes.first.get_by_role("button", name="No, not helpful").get_attribute("aria-pressed")
        == "true"
    )
    assert (
        votes.first.get_by_role("button", name="Yes, helpful").get_attribute("aria-pressed")
        == "false"
    )
    assert votes.nth(1).locator("[aria-pressed=true]").count() == 0
    assert suggestions.get_by_role("button").first.is_enabled()  # still offered
    assert dialog.locator(".source").all_inner_texts() == [
        "From our FAQ: “How much does shipping cost?”",
        "From our FAQ: “How do I track my order?”",
    ]
    assert all(dialog.locator(".msg").evaluate_all("ms => ms.map(m => m.dataset.time)"))
    save_screenshot(page, screenshot_dir, "widget-restored.png")
    suggestions.get_by_role("button").first.click()
    dialog.locator(".msg.bot").nth(4).wait_for()  # greeting, 3 replies, the picked answer


@pytest.mark.parametrize(
    ("viewport", "name"), [(DESKTOP, "widget.png"), (PHONE, "widget-phone.png")]
)
def test_keyboard_only_conversation_is_accessible(
    make_app, live_server, browser, screenshot_dir, viewport, name
) -> None:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(f"{live_server(make_app())}/demo")
    assert axe_violations(page) == []  # widget closed
    tab_to(page, f"Open chat: {TITLE}")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=TITLE)
    dialog.wait_for(state="visible")
    assert focused_name(page) == "Your question"
    log = dialog.get_by_role("log", name="Conversation")
    log.evaluate(
        """log => { window.__sawTyping = false; new MutationObserver(() => {
             if (log.querySelector('.dots')) window.__sawTyping = true;
           }).observe(log, { childList: true }); }"""
    )
    page.keyboard.type("Is shipping free?")
    page.keyboard.press("Enter")
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
    assert page.evaluate("window.__sawTyping")  # the typing indicator showed while it answered
    assert dialog.locator(".dots").count() == 0
    assert focused_name(page) == "Your question"
    page.keyboard.press("Shift+Tab")  # from the input back to the vote
    for _ in range(4):
        if focused_name(page) == "No, not helpful":
            break
        page.keyboard.press("Shift+Tab")
    assert focused_name(page) == "No, not helpful"
    page.keyboard.press("Shift+Tab")
    assert focused_name(page) == "Yes, helpful"
    page.keyboard.press("Space")
    dialog.get_by_text("Thanks for your feedback!").wait_for()
    assert dialog.get_by_role("button", name="Yes, helpful").get_attribute("aria-pressed") == "true"
    tab_to(page, "Your question")
    page.keyboard.type("account")
    page.keyboard.press("Enter")
    dialog.get_by_role("group", name="Suggested questions").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert axe_violations(page) == []  # widget open, with an answer, votes and suggestions
    save_screenshot(page, screenshot_dir, name, docs=name == "widget.png")
    if viewport is PHONE:  # the panel covers the page: Tab goes round inside it, never behind
        left = []
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.localName") != "threefold-chat":
                left.append(page.evaluate("document.activeElement.outerHTML.slice(0, 60)"))
        assert left == []
        assert dialog.get_attribute("aria-modal") == "true"
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert focused_name(page) == f"Open chat: {TITLE}"
    context.close()


def test_api_down_keeps_the_message_and_retry_sends_it(
    make_app, live_server, page, screenshot_dir
) -> None:
    dialog = open_widget(page, live_server(make_app()))
    page.route("**/api/chat", lambda route: route.abort("connectionrefused"))
    ask(dialog, "Is shipping free?")
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "we cannot reach our help service" in alert.inner_text()
    assert "Failed to fetch" not in dialog.inner_text()
    assert dialog.locator(".msg.user.pending").inner_text() == "Is shipping free?"
    assert focused_name(page) == "Retry"
    save_screenshot(page, screenshot_dir, "widget-api-down.png")
    assert axe_violations(page) == []
    page.unroute("**/api/chat")
    page.keyboard.press("Enter")  # on the focused Retry button
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
    assert dialog.get_by_role("alert").count() == 0
    assert dialog.locator(".msg.user.pending").count() == 0
    assert dialog.locator(".msg.user").all_inner_texts() == ["Is shipping free?"]


def test_a_503_with_retry_after_is_retried_automatically(make_app, live_server, page) -> None:
    dialog = open_widget(page, live_server(make_app()))
    refused: list[str] = []

    def busy_once(route) -> None:
        if refused:
            route.fallback()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=503,
            headers={"Retry-After": "1"},
            json={"error": "unavailable", "message": "try again in a second"},
        )

    page.route("**/api/chat", busy_once)
    ask(dialog, "Is shipping free?")
    dialog.get_by_role("alert").wait_for()
    assert "will be sent again in 1 s" in dialog.get_by_role("alert").inner_text()
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for(timeout=10_000)
    assert len(refused) == 1 and dialog.get_by_role("alert").count() == 0


def test_too_many_waiting_from_one_network_says_so_and_keeps_the_message(
    make_app, live_server, page, screenshot_dir
) -> None:
    """The waiting cap's 429 is not "sending too quickly": the widget shows the server's words."""
    base = live_server(make_app(max_waiting_per_client=1))
    earlier = urllib.request.Request(  # another customer behind the same address asked first
        f"{base}/api/chat",
        data=json.dumps({"message": "talk to a human"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(earlier) as response:
        assert json.load(response)["outcome"] == "handoff"
    dialog = open_widget(page, base)
    ask(dialog, "talk to a human")
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "1 request for a person waiting from your network" in alert.inner_text()
    assert "sending messages very quickly" not in alert.inner_text()
    assert dialog.locator(".msg.user.pending").inner_text() == "talk to a human"
    save_screenshot(page, screenshot_dir, "widget-too-many-waiting.png")
    assert axe_violations(page) == []


def test_a_suggestion_pressed_while_the_bot_answers_stays_on_offer(
    make_app, live_server, page
) -> None:
    dialog = open_widget(page, live_server(make_app()))
    ask(dialog, "account")
    suggestions = dialog.get_by_role("group", name="Suggested questions")
    suggestions.wait_for()
    page.evaluate(  # the bot takes a while to answer
        """() => { const real = window.fetch; window.fetch = (url, options) =>
             new Promise((done) => setTimeout(done, String(url).endsWith('/api/chat') ? 1000 : 0))
               .then(() => real(url, options)); }"""
    )
    dialog.get_by_label("Your question").fill("Is shipping free?")
    dialog.get_by_label("Your question").press("Enter")
    first = suggestions.get_by_role("button").first
    first.click()  # while the answer is on its way: not sent, and not used up either
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
    assert dialog.locator(".msg.user").count() == 2
    assert first.is_enabled()
    first.click()
    dialog.locator(".msg.user").nth(2).wait_for()
    dialog.locator(".msg.bot").nth(3).wait_for()  # greeting, 2 replies, the picked answer
