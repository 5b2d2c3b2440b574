"""The storefront (recs /store) with the FAQ chat widget embedded, wired as `threefold demo`
wires them: two servers on their own origins, the widget calling the QA API across origins.
In headless Chromium at desktop and phone sizes, keyboard only, with the QA API down or hung,
and audited by axe-core on the combined page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.browser import axe_violations, page_problems, save_screenshot
from support.qa_widget import ask, focused_name, tab_to

from threefold.apps.demo.stack import AppServer, bind_servers, browser_origins
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.resources import open_resources as open_recs_resources
from threefold.apps.recs.web import create_app as create_recs_app
from threefold.apps.recs.web.pages import CHAT_TITLE
from threefold.streaming.connections import RedisSettings

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
OPEN = f"Open chat: {CHAT_TITLE}"
CLOSE = f"Close chat: {CHAT_TITLE}"


@dataclass
class Storefront:
    store_url: str
    qa: AppServer

    @property
    def chat_api(self) -> str:
        """A route pattern for the QA API only (the store's own /api/ is on another origin)."""
        return f"{self.qa.url}/api/**"


@pytest.fixture
def storefront(make_app, embedder, redis_url, redis_prefix, tmp_path) -> Iterator[Storefront]:
    """The QA app and the recs app on bound ports: the store embeds the widget from the QA
    origin, which allows the store's origin (as `threefold demo` sets them up)."""
    servers = bind_servers("127.0.0.1", ("qa", "recs"), None)
    try:
        servers["qa"].start(make_app(allowed_origins=browser_origins(servers["recs"])))
        settings = RecsConfig(
            chat_url=servers["qa"].url,
            redis_prefix=f"{redis_prefix}recs:",
            tune_on_start=False,
            rate_limit_per_minute=None,
            spool_dir=tmp_path / "recs-spool",
        )
        resources = open_recs_resources(settings, RedisSettings(url=redis_url), encoder=embedder)
        servers["recs"].start(create_recs_app(settings, resources))
        yield Storefront(f"{servers['recs'].url}/store", servers["qa"])
    finally:
        for server in servers.values():
            server.stop()


def open_store(browser, storefront: Storefront, viewport: dict, *, mobile: bool = False):
    context = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    problems = page_problems(page)
    page.goto(storefront.store_url)
    page.wait_for_selector("#recs .card")
    page.get_by_role("button", name=OPEN).wait_for()
    return context, page, problems


def launcher_has_focus(page) -> bool:
    return focused_name(page) in (OPEN, CLOSE)


UNDER_LAUNCHER = """() => {
  const node = document.activeElement.getBoundingClientRect();
  const chat = document.querySelector("threefold-chat").shadowRoot;
  const launcher = chat.querySelector(".launcher").getBoundingClientRect();
  const across = Math.min(node.right, launcher.right) - Math.max(node.left, launcher.left);
  const down = Math.min(node.bottom, launcher.bottom) - Math.max(node.top, launcher.top);
  return Math.round(Math.max(0, across) * Math.max(0, down));
}"""


@pytest.mark.parametrize(("viewport", "size"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_keyboard_alone_asks_the_store_widget_and_returns_to_the_store(
    browser, storefront, screenshot_dir: Path, viewport, size
) -> None:
    context, page, problems = open_store(browser, storefront, viewport, mobile=viewport is PHONE)
    assert axe_violations(page) == []  # the store with the widget closed
    save_screenshot(page, screenshot_dir, f"store-chat-{size}.png")

    # Tab goes through the store's own controls first; the launcher comes after them
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        if launcher_has_focus(page):
            break
        reached.append(page.evaluate("(e => e.id || e.className)(document.activeElement)"))
        # the focused control scrolls into view above the launcher, never partly under it
        assert page.evaluate(UNDER_LAUNCHER) == 0, f"the launcher covers the focused {reached[-1]}"
        if reached[-1] == "card":  # the last one saved: the bottom of the list, in focus
            save_screenshot(page, screenshot_dir, f"store-chat-{size}-focus.png")
    else:
        pytest.fail("Tab never reached the chat launcher")
    assert reached[:4] == ["user", "category", "diversity", "refresh"]
    assert reached.count("card") == page.locator("#recs .card").count()

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=CHAT_TITLE)
    dialog.wait_for(state="visible")
    assert focused_name(page) == "Your question"
    page.keyboard.type("Is shipping free?")
    page.keyboard.press("Enter")
    answer = dialog.locator(".msg.bot[data-faq-id='shipping_cost']")
    answer.wait_for()
    assert "Standard shipping is free on orders over $50" in answer.inner_text()
    assert focused_name(page) == "Your question"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert axe_violations(page) == []  # the store and the open widget together
    save_screenshot(page, screenshot_dir, f"store-chat-{size}-open.png")

    stops = []
    for _ in range(12):
        page.keyboard.press("Tab")
        inside = page.evaluate("document.activeElement.localName") == "threefold-chat"
        stops.append(focused_name(page) if inside else "(the store)")
    if viewport is PHONE:  # the panel covers the store: Tab goes round inside it
        assert "(the store)" not in stops
        assert dialog.get_attribute("aria-modal") == "true"
        assert "Close chat" in stops and "Your question" in stops
    else:  # beside the store, not modal: Tab moves on to the launcher, then to the store
        assert dialog.get_attribute("aria-modal") == "false"
        assert stops[stops.index("Send message") + 1] == CLOSE
        assert "(the store)" in stops

    # closing with × (Enter on it) puts the focus back on the launcher
    tab_to(page, "Close chat")
    page.keyboard.press("Enter")
    dialog.wait_for(state="hidden")
    assert focused_name(page) == OPEN
    # ... and so does Escape
    page.keyboard.press("Enter")
    dialog.wait_for(state="visible")
    assert dialog.locator(".msg.bot[data-faq-id='shipping_cost']").count() == 1
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert focused_name(page) == OPEN

    # the store still works after the chat: Shift+Tab back to a card, choose it
    for _ in range(3):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.className") == "card":
            break
    title = page.evaluate("document.activeElement.querySelector('.title').textContent")
    page.keyboard.press("Enter")
    page.locator("#history li").first.wait_for()
    assert page.locator("#history li").first.inner_text() == title
    assert problems == []  # no console error, no failed request on either origin
    context.close()


def test_on_a_phone_the_launcher_blocks_no_store_control(
    browser, storefront, screenshot_dir: Path
) -> None:
    context, page, _ = open_store(browser, storefront, PHONE, mobile=True)
    launcher = page.get_by_role("button", name=OPEN).bounding_box()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    save_screenshot(page, screenshot_dir, "store-chat-phone-bottom.png")
    under = page.evaluate(
        """(box) => [...document.querySelectorAll('main button, main select, main input, aside')]
          .filter((node) => {
            const r = node.getBoundingClientRect();
            return r.right > box.x && r.left < box.x + box.width
              && r.bottom > box.y && r.top < box.y + box.height;
          }).map((node) => node.id || node.textContent.trim().slice(0, 40))""",
        launcher,
    )
    assert under == []  # scrolled to the end, nothing of the store lies under the launcher
    context.close()


def test_qa_api_down_the_widget_says_so_and_the_store_keeps_working(
    browser, storefront, screenshot_dir: Path
) -> None:
    context, page, problems = open_store(browser, storefront, PHONE, mobile=True)
    page.route(storefront.chat_api, lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name=OPEN).focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=CHAT_TITLE)
    ask(dialog, "Is shipping free?")
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "we cannot reach our help service" in alert.inner_text()
    assert dialog.locator(".dots").count() == 0  # no typing indicator left spinning
    assert focused_name(page) == "Retry"
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "store-chat-phone-qa-down.png")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    version = int(page.get_attribute("#recs", "data-version"))
    page.locator("#recs .card").first.tap()
    page.wait_for_function(f"Number(document.querySelector('#recs').dataset.version) > {version}")
    assert page.locator("#history li").count() == 1
    assert page.locator("#problem").is_hidden()
    assert [p for p in problems if p.startswith("HTTP")] == []  # the store's requests all fine
    context.close()


def test_a_hung_qa_api_is_reported_not_waited_on_forever(
    browser, storefront, screenshot_dir: Path
) -> None:
    context, page, _ = open_store(browser, storefront, DESKTOP)
    held = []
    page.route(f"{storefront.qa.url}/api/chat", lambda route: held.append(route))  # no answer
    page.clock.install()
    page.get_by_role("button", name=OPEN).focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=CHAT_TITLE)
    ask(dialog, "Is shipping free?")
    dialog.locator(".dots").wait_for()
    page.clock.run_for(60_000)
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "did not answer within 15 s" in alert.inner_text()
    assert dialog.locator(".dots").count() == 0  # no longer "typing" ...
    assert dialog.get_by_role("button", name="Send message").is_enabled()  # ... nor busy
    assert dialog.locator(".msg.user.pending").inner_text() == "Is shipping free?"
    assert focused_name(page) == "Retry"
    save_screenshot(page, screenshot_dir, "store-chat-qa-hung.png")

    page.unroute(f"{storefront.qa.url}/api/chat")  # the API answers again
    page.keyboard.press("Enter")
    dialog.locator(".msg.bot[data-faq-id='shipping_cost']").wait_for()
    assert dialog.get_by_role("alert").count() == 0
    context.close()


def test_a_qa_server_that_never_answers_does_not_stop_the_store(browser, storefront) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.route(f"{storefront.qa.url}/static/widget.js", lambda route: None)  # hangs
    page.goto(storefront.store_url, wait_until="commit")
    page.wait_for_selector("#recs .card")
    version = int(page.get_attribute("#recs", "data-version"))
    page.locator("#recs .card").first.click()
    page.wait_for_function(f"Number(document.querySelector('#recs').dataset.version) > {version}")
    assert page.locator("#history li").count() == 1
    context.close()
