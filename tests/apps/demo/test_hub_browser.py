"""The demo hub's entry page in headless Chromium: desktop and phone, keyboard, axe-core."""

from __future__ import annotations

import pytest
from support.browser import axe_violations, page_problems, save_screenshot

from threefold.apps.demo.config import HubConfig
from threefold.apps.demo.web.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Long, realistic URLs: the code elements that show them must wrap inside their card.
CONFIG = HubConfig(
    qa_url="http://faq-bot.internal.example.com:18001",
    recs_url="http://recommendations.internal.example.com:18002",
    dashboard_url="http://alerts-dashboard.internal.example.com:18003",
)


@pytest.mark.parametrize(
    ("viewport", "name"),
    [({"width": 1280, "height": 800}, "hub.png"), ({"width": 390, "height": 844}, "hub-phone.png")],
)
def test_hub_cards_hold_their_urls_with_a_favicon_and_no_axe_violations(
    live_server, browser, screenshot_dir, viewport, name
):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    problems = page_problems(page)
    page.goto(live_server(create_app(CONFIG)) + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('.app code')].filter((code) => {
             const card = code.closest('.app').getBoundingClientRect();
             return code.getBoundingClientRect().right > card.right;
           }).map((code) => code.textContent)"""
    )
    assert overflowing == []
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, name, docs=name == "hub.png")
    assert problems == []  # no console error, no 404 (favicon included)
    context.close()


def test_keyboard_reaches_every_page_of_the_demo(live_server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_server(create_app(CONFIG)) + "/")
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.href || ''"))
    # every page the demo prints at start, the staff pages included (the review queue too)
    for url in ("/store", "/demo", "/agent", "/review", "/metrics", "/healthz"):
        assert any(link.endswith(url) for link in reached), url
    assert f"{CONFIG.recs_url}/store" in reached and f"{CONFIG.qa_url}/demo" in reached
    assert f"{CONFIG.dashboard_url}/" in reached
    context.close()
