"""The FAQ bot's pages (widget test page, agent console, review queue) at 320 px wide with 200 %
text: no sideways scrolling, no text sticking out of its box, still axe-core clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.browser import axe_violations
from support.qa_widget import ask, open_widget
from support.reflow import overflow_problems, zoom_text

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

NARROW = {"width": 320, "height": 640}
ADMIN_TOKEN = "test-admin-token"


def test_widget_test_page_reflows_at_320_px_with_200_percent_text(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    context = browser.new_context(viewport=NARROW)
    try:
        page = context.new_page()
        page.goto(f"{live_server(make_app())}/demo")
        page.locator("threefold-chat").wait_for(state="attached")
        zoom_text(page)
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / "qa-demo-320-text-200.png"), full_page=True)
    finally:
        context.close()


def test_agent_console_reflows_at_320_px_with_200_percent_text(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    base = live_server(make_app(agent_tokens="Alice:tok-alice-1"))
    customer = browser.new_context(viewport=NARROW)
    agent = browser.new_context(viewport=NARROW)
    try:
        dialog = open_widget(customer.new_page(), base)
        ask(dialog, "Can I talk to a real person please?")
        dialog.get_by_text("We're finding a member of our team").wait_for()
        console = agent.new_page()
        console.goto(f"{base}/agent")
        console.get_by_label("Agent token").fill("tok-alice-1")
        console.keyboard.press("Enter")
        console.get_by_text("Signed in as Alice").wait_for()
        item = console.locator("#waiting button").first
        item.press("Enter")
        console.get_by_role("button", name="Claim", exact=True).press("Enter")
        console.get_by_text("claimed by you").wait_for()
        console.locator("#claimed button").first.wait_for()
        zoom_text(console)
        assert overflow_problems(console) == []
        top = console.locator(".top").bounding_box()
        out = console.get_by_role("button", name="Sign out").bounding_box()
        assert out["x"] + out["width"] <= top["x"] + top["width"]  # inside the header bar
        assert axe_violations(console) == []
        console.screenshot(path=str(screenshot_dir / "qa-agent-320-text-200.png"), full_page=True)
    finally:
        customer.close()
        agent.close()


def test_review_queue_reflows_at_320_px_with_200_percent_text(
    make_app, live_server, browser, screenshot_dir: Path
) -> None:
    base = live_server(make_app(follow_pointer_s=0))
    context = browser.new_context(viewport=NARROW)
    try:
        page = context.new_page()
        for question in ("my box got eaten by the dog, what now", "the dog chewed my package"):
            page.request.post(f"{base}/api/chat", data={"message": question})
        page.goto(f"{base}/review")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.keyboard.press("Enter")
        page.locator(".group").first.wait_for()
        page.locator("details summary").first.press("Enter")
        zoom_text(page)
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / "qa-review-320-text-200.png"), full_page=True)
    finally:
        context.close()
