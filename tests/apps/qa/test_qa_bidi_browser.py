"""Right-to-left and left-to-right text side by side in the chat widget, the agent console and
the review queue: what a person typed or the data holds takes its own direction (dir="auto");
the pages' own words (headers, labels, buttons) stay left to right."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from support.browser import axe_violations, save_screenshot
from support.qa_widget import ask, open_widget
from support.reflow import direction

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

ARABIC = "مرحبا, I need help with order 123"
HEBREW = "שלום, the lamp for order 123 arrived broken"
ARABIC_REPLY = "شكرا, order 123 ships today"
TOKENS = "Alice:tok-alice-1"
ADMIN_TOKEN = "test-admin-token"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# Where the text of an element starts and ends inside it: right-aligned text ends at the right.
TEXT_SIDES = """(node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const text = range.getBoundingClientRect(), box = node.getBoundingClientRect();
  const style = getComputedStyle(node);
  return { left: text.left - box.left - parseFloat(style.paddingLeft),
           right: box.right - parseFloat(style.paddingRight) - text.right };
}"""


@pytest.mark.parametrize("size", VIEWPORTS)
def test_widget_bubbles_and_input_take_the_direction_of_their_text(
    make_app, live_server, browser, screenshot_dir: Path, size: str
) -> None:
    context = browser.new_context(viewport=VIEWPORTS[size])
    try:
        page = context.new_page()
        dialog = open_widget(page, live_server(make_app()))
        box = dialog.get_by_label("Your question")
        assert box.get_attribute("dir") == "auto"
        box.fill(ARABIC)
        assert direction(box) == "rtl"  # the field follows what is typed into it
        box.press("Enter")
        arabic = dialog.locator(".msg.user", has_text="مرحبا")
        arabic.wait_for()
        dialog.locator(".msg.bot").nth(1).wait_for()  # the bot's reply to it
        box.fill("Is shipping free?")
        assert direction(box) == "ltr"
        box.press("Enter")
        answer = dialog.locator(".msg.bot[data-faq-id='shipping_cost']")
        answer.wait_for()
        ask(dialog, "account")
        suggestions = dialog.get_by_role("group", name="Suggested questions")
        suggestions.wait_for()

        assert direction(arabic) == "rtl"
        sides = arabic.evaluate(TEXT_SIDES)
        assert sides["right"] <= 1, sides  # right-aligned: the text ends at the bubble's right
        english = dialog.locator(".msg.user", has_text="Is shipping free?")
        assert direction(english) == "ltr" and english.evaluate(TEXT_SIDES)["left"] <= 1
        assert direction(answer) == "ltr"
        first = suggestions.get_by_role("button").first
        assert first.get_attribute("dir") == "auto" and direction(first) == "ltr"
        source = dialog.locator(".source").first
        assert direction(source) == "ltr"  # "From our FAQ:" is the widget's own words ...
        assert source.locator("bdi").count() == 1  # ... the FAQ's question is isolated in it
        assert direction(dialog) == "ltr"  # the panel
        for chrome in (".header", ".log", "form"):
            assert direction(dialog.locator(chrome).first) == "ltr", chrome
        # the bubble stays on the customer's side: right, the page chrome being LTR
        log_box, bubble = dialog.locator(".log").bounding_box(), arabic.bounding_box()
        assert bubble["x"] + bubble["width"] > log_box["x"] + log_box["width"] - 40
        arabic.scroll_into_view_if_needed()
        assert axe_violations(page) == []
        save_screenshot(page, screenshot_dir, f"qa-widget-bidi-{size}.png")
    finally:
        context.close()


def test_agent_console_and_widget_show_each_turn_in_its_own_direction(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    base = live_server(make_app(agent_tokens=TOKENS))
    customer = browser.new_context(viewport=VIEWPORTS["desktop"])
    agent = browser.new_context(viewport=VIEWPORTS["desktop"])
    try:
        page, console = customer.new_page(), agent.new_page()
        dialog = open_widget(page, base)
        ask(dialog, "I need a human agent")
        dialog.get_by_text("We're finding a member of our team").wait_for()
        ask(dialog, ARABIC)  # while waiting: the newest line in the agent's queue
        dialog.locator(".msg.user", has_text="مرحبا").wait_for()

        console.goto(f"{base}/agent")
        console.get_by_label("Agent token").fill("tok-alice-1")
        console.keyboard.press("Enter")
        console.get_by_text("Signed in as Alice").wait_for()
        item = console.locator("#waiting button").first
        item.wait_for()
        last = item.locator(".last bdi")
        expect(last).to_have_text(ARABIC)
        assert direction(last) == "rtl" and direction(item) == "ltr"
        item.press("Enter")
        console.get_by_role("button", name="Claim", exact=True).press("Enter")
        console.get_by_text("claimed by you").wait_for()

        turn = console.locator("#transcript .turn.user", has_text="مرحبا")
        assert turn.get_attribute("dir") == "auto" and direction(turn) == "rtl"
        assert direction(turn.locator(".who")) == "ltr"  # "Customer" is the console's word
        asked = console.locator("#transcript .turn.user", has_text="human agent")
        assert direction(asked) == "ltr"
        reply = console.get_by_label("Reply", exact=True)
        assert reply.get_attribute("dir") == "auto"
        reply.fill(ARABIC_REPLY)
        assert direction(reply) == "rtl"
        reply.press("Control+Enter")
        sent = console.locator("#transcript .turn.agent", has_text="شكرا")
        sent.wait_for()
        assert direction(sent) == "rtl"
        assert direction(console.locator("#transcript")) == "ltr"
        question = console.locator("#suggested .q").first
        assert question.get_attribute("dir") == "auto"

        agent_bubble = dialog.locator(".msg.agent", has_text="شكرا")
        agent_bubble.wait_for()
        assert direction(agent_bubble) == "rtl"
        assert direction(agent_bubble.locator(".who")) == "ltr"  # "Alice"
        assert agent_bubble.inner_text() == f"Alice\n{ARABIC_REPLY}"
        assert axe_violations(console) == []
        assert axe_violations(page) == []
        save_screenshot(console, screenshot_dir, "qa-agent-bidi.png")
        save_screenshot(page, screenshot_dir, "qa-widget-agent-bidi.png")
    finally:
        customer.close()
        agent.close()


def test_review_queue_shows_a_right_to_left_question_in_its_own_direction(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    base = live_server(make_app(follow_pointer_s=0))
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        reply = page.request.post(f"{base}/api/chat", data={"message": HEBREW}).json()
        assert reply["outcome"] != "answer", reply
        page.goto(f"{base}/review")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.keyboard.press("Enter")
        page.get_by_text("1 item to review in 1 group").wait_for()
        heading = page.get_by_role("heading", name=f"Declined {HEBREW}")
        assert direction(heading) == "ltr"  # the kind badge and the count are the page's own
        question = heading.locator("bdi")
        assert question.inner_text() == HEBREW and direction(question) == "rtl"
        details = page.locator("details").first
        details.locator("summary").press("Enter")
        for field in details.locator("input, textarea").all():
            assert field.get_attribute("dir") == "auto"
        assert axe_violations(page) == []
        save_screenshot(page, screenshot_dir, "qa-review-bidi-phone.png")
    finally:
        context.close()
