"""The storefront demo page in real headless Chromium: pick a shopper, click, list updates."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_storefront_shows_recommendations_and_updates_after_a_click(
    make_app, live_server, page, screenshot_dir
):
    base = live_server(make_app())
    page.goto(f"{base}/store")
    page.wait_for_selector("#recs .card")
    assert "new shopper" in page.text_content("#status")  # a new visitor: cold start

    page.select_option("#user", "u001")
    page.wait_for_function("document.querySelector('#status').textContent.includes('personalised')")
    cards = page.locator("#recs .card")
    assert cards.count() == 8
    first_reason = page.text_content("#recs .card .reason")
    assert first_reason.startswith(("Because you", "Popular", "Trending"))
    before = [cards.nth(i).get_attribute("data-item-id") for i in range(cards.count())]
    clicked_title = page.text_content("#recs .card .title")
    version = int(page.get_attribute("#recs", "data-version"))

    cards.first.click()
    page.wait_for_function(f"Number(document.querySelector('#recs').dataset.version) > {version}")
    after = [cards.nth(i).get_attribute("data-item-id") for i in range(cards.count())]
    assert after != before
    assert before[0] not in after  # the clicked item is now seen: not recommended again
    assert page.text_content("#history li") == clicked_title
    page.screenshot(path=str(screenshot_dir / "recs_storefront.png"), full_page=True)

    page.select_option("#category", "Beauty")
    page.wait_for_function(
        f"Number(document.querySelector('#recs').dataset.version) > {version + 1}"
    )
    categories = page.locator("#recs .card .meta").all_text_contents()
    assert categories and all(text.startswith("Beauty") for text in categories)
