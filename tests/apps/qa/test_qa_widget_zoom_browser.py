"""The chat widget zoomed in: 200 % browser zoom on a 1280x800 screen is a 640x400 CSS viewport,
where the conversation must keep a usable share of the panel and nothing may be cut off; and
at 320 px wide with 200 % text, nothing may stick out or scroll sideways."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.browser import axe_violations, save_screenshot
from support.qa_widget import TITLE, ask, focused_name, open_widget, tab_to
from support.reflow import overflow_problems, zoom_text

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

ZOOMED = {"width": 640, "height": 400}  # 1280x800 at 200 % zoom
NARROW = {"width": 320, "height": 640}

# Boxes of the widget's parts, in CSS px of the viewport.
BOXES = """(host) => {
  const root = host.shadowRoot, box = (sel) => {
    const node = root.querySelector(sel);
    if (!node) return null;
    const r = node.getBoundingClientRect();
    return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height,
             client: node.clientHeight };
  };
  return { panel: box('.panel'), log: box('.log'), header: box('.header'), close: box('.close'),
           form: box('form:not(.leave)'), send: box('form:not(.leave) .send') };
}"""

# The focused element (inside the widget) lies wholly inside the panel and the viewport.
FOCUS_IN_VIEW = """(host) => {
  const node = host.shadowRoot.activeElement;
  if (!node) return false;
  const r = node.getBoundingClientRect();
  const p = host.shadowRoot.querySelector('.panel').getBoundingClientRect();
  return r.top >= p.top - 1 && r.bottom <= p.bottom + 1
    && r.top >= 0 && r.bottom <= innerHeight + 1;
}"""

SHOW_LAST = """(host) => {
  const log = host.shadowRoot.querySelector('.log');
  const last = [...log.querySelectorAll('.msg')].pop();
  last.scrollIntoView({ block: 'end' });
  const r = last.getBoundingClientRect(), l = log.getBoundingClientRect();
  return r.top >= l.top - 1 && r.bottom <= l.bottom + 1;
}"""


def boxes(page) -> dict:
    return page.locator("threefold-chat").evaluate(BOXES)


def assert_inside(inner: dict, outer: dict, what: str) -> None:
    assert inner["top"] >= outer["top"] - 1 and inner["bottom"] <= outer["bottom"] + 1, what
    assert inner["left"] >= outer["left"] - 1 and inner["right"] <= outer["right"] + 1, what


def test_at_200_percent_zoom_the_conversation_keeps_most_of_the_panel(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    context = browser.new_context(viewport=ZOOMED)
    try:
        page = context.new_page()
        dialog = open_widget(page, live_server(make_app()))
        ask(dialog, "Is shipping free?")
        dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
        ask(dialog, "account")
        dialog.get_by_role("group", name="Suggested questions").wait_for()
        ask(dialog, "Can I talk to a real person please?")
        dialog.get_by_text("We're finding a member of our team").wait_for()

        b = boxes(page)
        screen = {"top": 0, "bottom": ZOOMED["height"], "left": 0, "right": ZOOMED["width"]}
        assert_inside(b["panel"], screen, "the panel fits the screen")
        for part in ("header", "close", "form", "send"):
            assert_inside(b[part], b["panel"], part)
        # the conversation, not the chrome, has the room: half the screen, 40 % of the panel
        assert b["log"]["client"] >= 0.5 * ZOOMED["height"], b
        assert b["log"]["client"] >= 0.4 * b["panel"]["height"], b
        assert page.locator("threefold-chat").evaluate(SHOW_LAST)  # the last message shows
        save_screenshot(page, screenshot_dir, "qa-widget-zoom-200.png")

        # keyboard only: every control is reached, and shown when reached
        for name in ("Close chat", "Conversation", "Your question", "Send message"):
            tab_to(page, name)
            assert page.locator("threefold-chat").evaluate(FOCUS_IN_VIEW), name
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.keyboard.press("Escape")
        assert focused_name(page) == f"Open chat: {TITLE}"
    finally:
        context.close()


def test_at_200_percent_zoom_the_leave_a_message_form_is_reachable(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    base = live_server(make_app(agent_tokens="Alice:tok-alice-1", agent_wait_timeout_s=1.5))
    context = browser.new_context(viewport=ZOOMED)
    try:
        page = context.new_page()
        dialog = open_widget(page, base)
        ask(dialog, "I need a human agent")
        dialog.get_by_text("nobody from our team is free right now").wait_for()
        b = boxes(page)
        assert b["panel"]["top"] >= 0 and b["panel"]["bottom"] <= ZOOMED["height"] + 1, b
        assert b["log"]["client"] >= 0.4 * b["panel"]["height"], b  # still a conversation
        save_screenshot(page, screenshot_dir, "qa-widget-zoom-200-leave.png")

        tab_to(page, "Your message for our team")
        assert page.locator("threefold-chat").evaluate(FOCUS_IN_VIEW)
        page.keyboard.type("Please call me back about order 1234")
        tab_to(page, "Leave message")
        assert page.locator("threefold-chat").evaluate(FOCUS_IN_VIEW)
        page.keyboard.press("Enter")
        dialog.get_by_text("Your message is stored").wait_for()
        tab_to(page, "Your question")
        assert page.locator("threefold-chat").evaluate(FOCUS_IN_VIEW)
        assert axe_violations(page) == []
        save_screenshot(page, screenshot_dir, "qa-widget-zoom-200-left.png")
    finally:
        context.close()


def test_at_320_px_with_200_percent_text_nothing_sticks_out(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    context = browser.new_context(viewport=NARROW)
    try:
        page = context.new_page()
        dialog = open_widget(page, live_server(make_app()))
        ask(dialog, "Is shipping free?")
        dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
        ask(dialog, "account")
        dialog.get_by_role("group", name="Suggested questions").wait_for()
        zoom_text(page)
        page.wait_for_timeout(100)
        b = boxes(page)
        for part in ("header", "close", "form", "send"):
            assert_inside(b[part], b["panel"], part)
        assert_inside(b["close"], b["header"], "the close button sits in the header")
        assert b["log"]["client"] >= 0.4 * b["panel"]["height"], b
        assert overflow_problems(page) == []
        for name in ("Close chat", "Your question", "Send message"):
            tab_to(page, name)
            assert page.locator("threefold-chat").evaluate(FOCUS_IN_VIEW), name
        save_screenshot(page, screenshot_dir, "qa-widget-320-text-200.png")
    finally:
        context.close()
