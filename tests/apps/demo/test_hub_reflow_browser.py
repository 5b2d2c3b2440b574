"""The demo hub's entry page at 320 px wide with 200 % text: no sideways scrolling, no text
sticking out of its card, axe-core clean."""

from __future__ import annotations

import pytest
from support.browser import axe_violations
from support.reflow import overflow_problems, zoom_text

from threefold.apps.demo.web.app import create_app

from .test_hub_browser import CONFIG

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_hub_reflows_at_320_px_with_200_percent_text(live_server, browser, screenshot_dir):
    context = browser.new_context(viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        page.goto(live_server(create_app(CONFIG)) + "/")
        zoom_text(page)
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / "hub-320-text-200.png"), full_page=True)
    finally:
        context.close()
