"""The FAQ bot's chat widget test page (/demo) in headless Chromium: no dead links, a favicon,
keyboard access to the widget, and an axe-core audit with the widget closed and open."""

from __future__ import annotations

import pytest
from support.browser import axe_violations, page_problems, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

LAUNCHER = "Open chat: Juniper & Pine help"


@pytest.mark.parametrize(
    ("viewport", "name"),
    [
        ({"width": 1280, "height": 800}, "qa-demo.png"),
        ({"width": 390, "height": 844}, "qa-demo-phone.png"),
    ],
)
def test_widget_test_page_is_clean_with_the_widget_closed(
    make_app, live_server, browser, screenshot_dir, viewport, name
):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    problems = page_problems(page)
    page.goto(f"{live_server(make_app())}/demo")
    page.get_by_role("button", name=LAUNCHER).wait_for()
    hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
    assert hrefs and not [h for h in hrefs if h.startswith("#")]  # no dead links
    for href in hrefs:
        assert page.request.get(page.url.rsplit("/", 1)[0] + href).status in (200, 503), href
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, name, docs=name == "qa-demo.png")
    assert problems == []  # no console error, no 404 (favicon included)
    context.close()


def test_keyboard_opens_the_widget_and_the_page_around_it_stays_clean(
    make_app, live_server, page, screenshot_dir
):
    page.goto(f"{live_server(make_app())}/demo")
    launcher = page.get_by_role("button", name=LAUNCHER)
    for _ in range(20):
        page.keyboard.press("Tab")
        if launcher.evaluate("e => e === e.getRootNode().activeElement"):
            break
    else:
        pytest.fail("Tab never reached the chat launcher")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Juniper & Pine help")
    dialog.wait_for(state="visible")
    save_screenshot(page, screenshot_dir, "qa-demo-widget-open.png")
    assert axe_violations(page) == []  # the page and the open widget (its shadow DOM included)


def test_widget_open_has_no_axe_violations(make_app, live_server, page):
    page.goto(f"{live_server(make_app())}/demo")
    page.get_by_role("button", name=LAUNCHER).click()
    page.get_by_role("dialog", name="Juniper & Pine help").wait_for(state="visible")
    assert axe_violations(page) == []
