"""The agent console shows every message a customer left for the team (headless Chromium)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SCREENSHOTS = Path(__file__).parents[2] / ".artifacts" / "screenshots"


def test_the_console_lists_every_left_message_masked(make_app, live_server, browser) -> None:
    app = make_app(agent_tokens="Alice:tok-alice-1", agent_wait_timeout_s=0.05)
    client = app.test_client()
    asked = client.post("/api/chat", json={"message": "Can I talk to a real person please?"})
    sid = asked.get_json()["session_id"]
    time.sleep(0.1)  # past the wait: the widget offers the form
    for text in ("Order 123 never arrived, call me at 555-0100", "also my email is x@y.z"):
        left = client.post(f"/api/sessions/{sid}/message-for-team", json={"text": text})
        assert left.status_code == 201, left.get_json()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    console = context.new_page()
    try:
        console.goto(f"{live_server(app)}/agent")
        console.get_by_label("Agent token").fill("tok-alice-1")
        console.get_by_label("Agent token").press("Enter")
        console.get_by_text("Left 2 messages, the newest: also my email is [email]").wait_for()
        console.locator("#waiting button").first.press("Enter")
        left = console.locator("#d-left")
        expect(left).to_contain_text("Messages left for the team:")
        expect(left.locator("bdi")).to_have_text(
            ["Order 123 never arrived, call me at [phone]", "also my email is [email]"]
        )
        expect(left).not_to_contain_text("555-0100")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        console.screenshot(path=str(SCREENSHOTS / "qa_agent_console_left_messages.png"))
    finally:
        context.close()
