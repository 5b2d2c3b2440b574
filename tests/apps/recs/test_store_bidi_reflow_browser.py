"""The storefront with an item titled in Arabic among English ones: the catalog's words take their
own direction (dir="auto") in an English page; and the page at 320 px wide with 200 % text: no
sideways scrolling, no text sticking out of its box, axe-core clean."""

from __future__ import annotations

import json

import pytest
from support.browser import axe_violations, page_problems
from support.reflow import direction, overflow_problems, zoom_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARABIC_TITLE = "مصباح مكتب LED بقوة 60W"
ARABIC_DESCRIPTION = "مصباح قابل للتعديل مع 3 مستويات سطوع, USB-C"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def arabic_first_item(route) -> None:
    """Serve the real recommendations, the first one retitled in Arabic."""
    response = route.fetch()
    body = response.json()
    if body.get("items"):
        body["items"][0]["title"] = ARABIC_TITLE
        body["items"][0]["description"] = ARABIC_DESCRIPTION
    route.fulfill(response=response, body=json.dumps(body))


@pytest.mark.parametrize("size", VIEWPORTS)
def test_item_titles_and_descriptions_take_their_own_direction(
    make_app, live_server, browser, screenshot_dir, size
) -> None:
    context = browser.new_context(viewport=VIEWPORTS[size])
    try:
        page = context.new_page()
        problems = page_problems(page)
        page.route("**/api/recommendations?*", arabic_first_item)
        page.goto(f"{live_server(make_app())}/store")
        page.wait_for_selector("#recs .card")
        arabic = page.locator("#recs .card").first
        title, description = arabic.locator(".title"), arabic.locator(".description")
        assert title.inner_text() == ARABIC_TITLE
        assert title.get_attribute("dir") == "auto" and direction(title) == "rtl"
        assert description.get_attribute("dir") == "auto" and direction(description) == "rtl"
        assert direction(arabic) == "ltr"  # the card itself: the shop's own words around it
        english = page.locator("#recs .card").nth(1).locator(".title")
        assert direction(english) == "ltr"
        assert direction(page.locator("h1")) == "ltr"

        arabic.focus()
        version = int(page.get_attribute("#recs", "data-version"))
        page.keyboard.press("Enter")  # keyboard: choose the Arabic item
        page.wait_for_function(
            f"Number(document.querySelector('#recs').dataset.version) > {version}"
        )
        clicked = page.locator("#history li").first
        assert clicked.inner_text() == ARABIC_TITLE
        assert clicked.get_attribute("dir") == "auto" and direction(clicked) == "rtl"
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / f"store-bidi-{size}.png"), full_page=True)
        assert problems == []
    finally:
        context.close()


def test_storefront_reflows_at_320_px_with_200_percent_text(
    make_app, live_server, browser, screenshot_dir
) -> None:
    context = browser.new_context(viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        page.goto(f"{live_server(make_app())}/store")
        page.wait_for_selector("#recs .card")
        page.locator("#recs .card").first.click()  # a click: the history list shows too
        page.wait_for_selector("#history li")
        page.wait_for_function("document.querySelector('#status').textContent.includes('items')")
        zoom_text(page)
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / "store-320-text-200.png"), full_page=True)
    finally:
        context.close()
