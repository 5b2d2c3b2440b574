"""The storefront (/store) in real headless Chromium, as a shopper uses it: pick a shopper,
choose items with the mouse or the keyboard, on a desktop and a phone, with the API down, and
audited by axe-core."""

from __future__ import annotations

import socket

import pytest
from support.browser import axe_violations, page_problems, save_screenshot

from threefold.apps.recs.web.pages import CHAT_TITLE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def open_store(browser, base: str, viewport: dict, *, mobile: bool = False):
    context = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    problems = page_problems(page)
    page.goto(f"{base}/store")
    page.wait_for_selector("#recs .card")
    return context, page, problems


def wait_for_new_list(page, version: int) -> None:
    page.wait_for_function(f"Number(document.querySelector('#recs').dataset.version) > {version}")


def list_version(page) -> int:
    return int(page.get_attribute("#recs", "data-version"))


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
    readout = page.request.get(f"{base}/api/impressions/ctr").json()
    assert readout["versions"]["base"]["click"] == 1  # the click named the list it came from
    page.screenshot(path=str(screenshot_dir / "recs_storefront.png"), full_page=True)

    page.select_option("#category", "Beauty")
    page.wait_for_function(
        f"Number(document.querySelector('#recs').dataset.version) > {version + 1}"
    )
    categories = page.locator("#recs .card .meta").all_text_contents()
    assert categories and all(text.startswith("Beauty") for text in categories)


def test_desktop_two_columns_empty_history_no_missing_files_and_axe_clean(
    make_app, live_server, browser, screenshot_dir
):
    context, page, problems = open_store(browser, live_server(make_app()), DESKTOP)
    main, aside = page.locator("main").bounding_box(), page.locator("aside").bounding_box()
    assert aside["x"] > main["x"] + main["width"] - 1  # history beside the recommendations
    assert aside["width"] >= 200
    empty = page.locator("#history-empty")
    assert empty.is_visible() and empty.inner_text().startswith("No clicks yet")
    assert page.title() == "threefold store"
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "store-desktop.png", docs=True)

    page.locator("#recs .card").first.click()
    page.locator("#history li").first.wait_for()
    assert empty.is_hidden()
    assert problems == []  # no console error, no 404 (favicon included)

    # nothing at all to recommend (an empty catalog): no "choose another category" when the
    # shopper already looks at all of them
    nothing = {"items": [], "cold_start": True, "list_id": "empty"}
    page.route("**/api/recommendations?*", lambda route: route.fulfill(json=nothing))
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_function("document.querySelector('#recs').children.length === 0")
    status = page.locator("#status").inner_text()
    assert status.startswith("Nothing to recommend yet") and "category" not in status, status
    page.select_option("#category", "Books")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Books')")
    assert page.locator("#status").inner_text().endswith("choose another category.")
    context.close()


def test_phone_stacks_the_columns_and_fits_the_screen(
    make_app, live_server, browser, screenshot_dir
):
    context, page, problems = open_store(browser, live_server(make_app()), PHONE, mobile=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    main, aside = page.locator("main").bounding_box(), page.locator("aside").bounding_box()
    assert aside["y"] >= main["y"] + main["height"] - 1  # history below, not squeezed beside
    assert aside["width"] >= 300
    card = page.locator("#recs .card").first.bounding_box()
    assert card["width"] >= 300  # one card per row, full width
    assert page.locator("#history-empty").is_visible()
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "store-phone.png", docs=True)
    assert problems == []
    context.close()


def test_keyboard_alone_chooses_items_with_space_and_enter(
    make_app, live_server, browser, screenshot_dir
):
    context, page, _ = open_store(browser, live_server(make_app()), DESKTOP)
    first = page.locator("#recs .card").first
    assert first.evaluate("e => e.tagName") == "BUTTON"
    for _ in range(30):  # Tab from the top of the page to the first card
        page.keyboard.press("Tab")
        if first.evaluate("e => e === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the first recommendation")
    outline = first.evaluate("e => getComputedStyle(e).outlineStyle")
    shadow = first.evaluate("e => getComputedStyle(e).boxShadow")
    assert outline != "none" or shadow != "none"  # a visible focus ring
    save_screenshot(page, screenshot_dir, "store-keyboard-focus.png")

    title = first.locator(".title").inner_text()
    version = list_version(page)
    page.keyboard.press("Space")
    wait_for_new_list(page, version)
    assert page.locator("#history li").first.inner_text() == title

    # the chosen card was replaced: focus moved to the first card of the new list
    assert page.evaluate("document.activeElement.className") == "card"
    second_title = page.evaluate("document.activeElement.querySelector('.title').textContent")
    version = list_version(page)
    page.keyboard.press("Enter")
    wait_for_new_list(page, version)
    assert page.locator("#history li").first.inner_text() == second_title
    context.close()


def test_shoppers_never_see_the_cache_but_the_api_reports_it(
    make_app, live_server, redis_url, redis_prefix, browser
):
    base = live_server(make_app(redis_url, redis_prefix=redis_prefix))
    context, page, _ = open_store(browser, base, DESKTOP)
    page.select_option("#user", "u001")
    page.wait_for_function("document.querySelector('#status').textContent.includes('personalised')")
    version = list_version(page)
    page.get_by_role("button", name="Refresh").click()
    wait_for_new_list(page, version)
    assert "cache" not in page.locator("body").inner_text().lower()
    user = page.input_value("#user")
    answer = page.request.get(f"{base}/api/recommendations?user_id={user}&k=8&diversity=0")
    assert answer.json()["cached"] is True  # the API still says so
    context.close()


def test_api_down_keeps_the_list_says_what_failed_and_retries_the_click(
    make_app, live_server, browser, screenshot_dir
):
    context, page, _ = open_store(browser, live_server(make_app()), PHONE, mobile=True)
    shown = page.locator("#recs .card").all_inner_texts()
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))

    first = page.locator("#recs .card").first
    title = first.locator(".title").inner_text()
    first.click()
    problem = page.get_by_role("alert")
    problem.wait_for(state="visible")
    text = problem.inner_text()
    assert f"Your click on “{title}” was not recorded" in text
    assert "the recommendation service did not answer" in text
    assert "Failed to fetch" not in text
    assert page.locator("#recs .card").all_inner_texts() == shown  # the list stays
    assert page.locator("#history li").count() == 0  # nothing claimed that was not stored
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "store-api-down.png")

    page.unroute("**/api/**")
    version = list_version(page)
    page.get_by_role("button", name="Try again").click()  # retries the click itself
    wait_for_new_list(page, version)
    assert problem.is_hidden()
    assert page.locator("#history li").first.inner_text() == title
    context.close()


def test_api_down_from_the_start_explains_and_recovers(make_app, live_server, browser):
    base = live_server(make_app())
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.goto(f"{base}/store")
    problem = page.get_by_role("alert")
    problem.wait_for(state="visible")
    assert problem.inner_text().startswith("The shop could not load")
    page.unroute("**/api/**")
    page.get_by_role("button", name="Try again").click()
    page.wait_for_selector("#recs .card")
    assert problem.is_hidden()
    context.close()


def test_refresh_loads_the_shop_when_it_failed_to_load_at_first(make_app, live_server, browser):
    base = live_server(make_app())
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.goto(f"{base}/store")
    page.get_by_role("alert").wait_for(state="visible")
    page.unroute("**/api/**")
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_selector("#recs .card")
    assert page.locator("#user option").count() > 1
    assert page.get_by_role("alert").is_hidden()
    context.close()


SLOW_USERS = """(() => {
  const real = window.fetch;
  window.fetch = (url, options) => {
    const delay = String(url).includes("/api/users") ? 1000 : 0;
    return new Promise((done) => setTimeout(done, delay)).then(() => real(url, options));
  };
})()"""


def test_refresh_while_the_shop_loads_does_not_load_it_twice(make_app, live_server, browser):
    base = live_server(make_app())
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.add_init_script(SLOW_USERS)
    page.goto(f"{base}/store")
    for _ in range(2):
        page.get_by_role("button", name="Refresh").click()  # while the shoppers still load
    page.wait_for_selector("#recs .card")
    users = page.locator("#user option").all_inner_texts()
    categories = page.locator("#category option").all_inner_texts()
    assert users.count("New visitor (no history)") == 1
    assert len(users) == len(set(users)) and len(categories) == len(set(categories))
    context.close()


SLOW_FETCH = """(() => {
  const real = window.fetch;
  window.__clicksPosted = 0;
  window.fetch = (url, options) => {
    const path = String(url);
    let delay = 0;
    if (path.includes("category=Books")) delay = 1500;  // an answer that arrives late
    if (path.includes("/api/events")) { window.__clicksPosted += 1; delay = 800; }
    return new Promise((done) => setTimeout(done, delay)).then(() => real(url, options));
  };
})()"""


def test_slow_api_shows_the_latest_choice_and_records_a_double_click_once(
    make_app, live_server, browser
):
    context = browser.new_context(viewport=DESKTOP)
    context.add_init_script(SLOW_FETCH)
    page = context.new_page()
    page.goto(f"{live_server(make_app())}/store")
    page.wait_for_selector("#recs .card")

    version = list_version(page)
    page.select_option("#category", "Books")  # slow answer...
    page.select_option("#category", "Beauty")  # ...overtaken by the shopper's next choice
    wait_for_new_list(page, version)
    page.wait_for_timeout(2000)  # the Books answer has arrived by now
    categories = page.locator("#recs .card .meta").all_text_contents()
    assert categories and all(text.startswith("Beauty") for text in categories), categories

    version = list_version(page)
    page.locator("#recs .card").first.dblclick()
    wait_for_new_list(page, version)
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__clicksPosted") == 1
    assert page.locator("#history li").count() == 1
    context.close()


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("viewport", "mobile", "name"), [(DESKTOP, False, "desktop"), (PHONE, True, "phone")]
)
def test_faq_server_down_still_shows_a_chat_launcher_that_says_chat_is_unavailable(
    make_app, live_server, browser, screenshot_dir, viewport, mobile, name
):
    """The widget's script comes from the FAQ server: with that server down the store showed no
    chat at all. Now the store's own launcher stands in and says so, by mouse and keyboard."""
    app = make_app(chat_url=f"http://127.0.0.1:{unused_port()}")
    context, page, _ = open_store(browser, live_server(app), viewport, mobile=mobile)
    launcher = page.get_by_role("button", name=f"Open chat: {CHAT_TITLE}")
    launcher.wait_for(timeout=5_000)
    box = launcher.bounding_box()
    assert box["x"] + box["width"] <= viewport["width"] and box["width"] >= 44  # a touch target
    assert box["y"] + box["height"] <= viewport["height"]  # fixed in view, bottom right
    save_screenshot(page, screenshot_dir, f"store-chat-down-{name}.png")

    launcher.click()
    dialog = page.get_by_role("dialog", name=CHAT_TITLE)
    assert dialog.is_visible()
    assert "Chat is unavailable right now" in dialog.inner_text()
    assert page.evaluate("document.activeElement.textContent") == "Try again"
    panel = dialog.bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= viewport["width"]
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, f"store-chat-down-{name}-open.png")

    page.keyboard.press("Enter")  # Try again: the server is still down
    page.get_by_text("Chat is still unavailable").wait_for(timeout=5_000)
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        f"Open chat: {CHAT_TITLE}"
    )
    page.keyboard.press("Enter")  # the keyboard opens it again
    assert dialog.is_visible()
    context.close()


def test_no_chat_launcher_without_a_chat_url(make_app, live_server, browser):
    context, page, problems = open_store(browser, live_server(make_app()), DESKTOP)
    assert page.get_by_role("button", name=f"Open chat: {CHAT_TITLE}").count() == 0
    assert problems == []
    context.close()
