"""The dashboard page in headless Chromium, as an analyst uses it: desktop and phone, keyboard
only, with its API down, and audited by axe-core."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.browser import axe_violations, copy_to_docs

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.state.store import StateStore
from threefold.apps.alerts.web import create_app

from .conftest import T0, calm_then_surge, make_scored

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">Quantive'
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
FEED_API = "threefold.apps.alerts.web.api"  # the module (`web.api` is the blueprint)


def test_dashboard_shows_series_and_alerts_as_text(
    redis_settings, redis_store, redis_prefix, live_server, page, screenshot_dir
):
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    store = redis_store
    items = calm_then_surge()
    for s in items[-20:]:
        s.item.text = HOSTILE
    pipeline = AlertPipeline.from_config(config, store)
    for i in range(0, len(items), 20):
        pipeline.process(items[i : i + 20])
    store.ack_alerts(store.pending_alerts())

    page.goto(live_server(create_app(config, open_resources(config, redis_settings))))
    page.wait_for_selector("#alerts li")
    page.wait_for_selector("#keys tbody tr")
    assert page.locator("#keys tbody tr").first.inner_text().startswith("legal")
    page.select_option("#kind", "entity")
    page.wait_for_function("document.querySelector('#keys tbody').innerText.includes('QNTV')")
    alert_text = page.locator("#alerts li").first.inner_text()
    assert "Negative sentiment surge" in alert_text
    assert HOSTILE in alert_text  # shown as text ...
    assert page.locator("#alerts img").count() == 0  # ... never parsed as HTML
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=str(screenshot_dir / "alerts_dashboard.png"), full_page=True)


# -- one seeded dashboard: topic "legal" surges (80 % negative vs 10 % usual), "markets" is calm


@dataclass
class Dashboard:
    url: str
    store: StateStore
    pipeline: AlertPipeline


@pytest.fixture
def dashboard(redis_settings, redis_store, redis_prefix, live_server) -> Dashboard:
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    store = redis_store
    pipeline = AlertPipeline.from_config(config, store)
    items = calm_then_surge() + markets_items(0, 32, lambda i: i % 3 == 0)
    for window in range(5):  # one batch per 5-minute window, as a consumer would see them
        pipeline.process([s for s in items if (s.item.event_time - T0) // 300 == window])
    store.ack_alerts(store.pending_alerts())
    app = create_app(config, open_resources(config, redis_settings))
    return Dashboard(live_server(app), store, pipeline)


@pytest.fixture
def dashboard_url(dashboard) -> str:
    return dashboard.url


def markets_items(first: int, count: int, negative, start: float = T0, every: float = 45):
    """Topic "markets" (company ACME), one item every `every` s; `negative(i)` picks negatives."""
    return [
        make_scored(
            f"mkt-{first + i}",
            start + i * every,
            "negative" if negative(i) else "positive",
            topic="markets",
            entities=("ACME",),
        )
        for i in range(count)
    ]


def open_page(browser, viewport: dict, scale: float, *, mobile: bool = False):
    context = browser.new_context(
        viewport=viewport, device_scale_factor=scale, is_mobile=mobile, has_touch=mobile
    )
    return context, context.new_page()


def wait_loaded(page) -> None:
    page.wait_for_selector("#alerts li.alert")
    page.wait_for_selector("#keys tbody tr")
    page.wait_for_function("document.getElementById('status').dataset.state === 'live'")


def save_screenshot(page, screenshot_dir: Path, name: str, *, docs: bool = False) -> None:
    path = screenshot_dir / name
    page.screenshot(path=str(path), scale="css")
    if docs:
        copy_to_docs(path)


def canvas_is_sharp(page) -> bool:
    """The canvas has one backing pixel per device pixel, so text is neither blurry nor shrunk."""
    return page.evaluate(
        """() => {
          const c = document.getElementById('chart');
          const r = window.devicePixelRatio;
          return c.width === Math.round(c.clientWidth * r)
            && c.height === Math.round(c.clientHeight * r);
        }"""
    )


def test_desktop_reads_as_words_with_nice_axes_and_no_missing_files(
    browser, dashboard_url, screenshot_dir
):
    context, page = open_page(browser, DESKTOP, 1)
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(dashboard_url)
    wait_loaded(page)

    alert = page.locator("#alerts li.alert").first.inner_text()
    assert "Negative sentiment surge: legal (topic)" in alert
    assert "80 % negative vs 10 % usual, 16 of 20 headlines, 1 May 2024, 08:20–08:25 UTC" in alert
    assert "T08:20:00Z" not in alert and "z 10" not in alert  # no raw ISO stamps or bare z
    status = page.locator("#status").inner_text()
    assert status.startswith("Live · updated ")

    # the favicon is declared and served (no 404 in the console)
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    favicon = page.request.get(dashboard_url + "/static/favicon.svg")
    assert favicon.status == 200 and "svg" in favicon.headers["content-type"]
    assert failed == []

    # chart: sharp on a 2x screen, nice count ticks, a text alternative and a data table
    assert canvas_is_sharp(page)
    assert page.evaluate("countScale(14)") == {"n": 4, "step": 5, "top": 20}
    assert page.evaluate("countScale(21)") == {"n": 5, "step": 5, "top": 25}
    assert page.evaluate("countScale(230)") == {"n": 5, "step": 50, "top": 250}
    chart = page.locator("#chart")
    assert chart.get_attribute("role") == "img"
    assert "legal (topic)" in chart.get_attribute("aria-label")
    assert "80 % negative of 20 messages" in chart.get_attribute("aria-label")
    page.locator("#chart-data summary").click()
    data_rows = page.locator("#chart-data tbody tr")
    assert data_rows.count() == 5
    assert data_rows.last.inner_text().split("\t") == ["08:20–08:25 (open)", "20", "16", "80 %"]
    assert axe_violations(page) == []  # with the data table open
    page.locator("#chart-data summary").click()

    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "dashboard-desktop.png", docs=True)
    context.close()


def test_phone_fits_the_screen_with_alerts_first(browser, dashboard_url, screenshot_dir):
    context, page = open_page(browser, PHONE, 3, mobile=True)
    page.goto(dashboard_url)
    wait_loaded(page)

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    alerts_box = page.locator(".alerts-panel").bounding_box()
    chart_box = page.locator(".charts").bounding_box()
    assert alerts_box["y"] < chart_box["y"]
    assert alerts_box["y"] < PHONE["height"] / 4  # the alerts are what the analyst sees first
    assert canvas_is_sharp(page)  # drawn at the phone's size: 12 px text stays 12 px
    table_box = page.locator("#keys").bounding_box()
    assert table_box["x"] >= 0 and table_box["x"] + table_box["width"] <= PHONE["width"]
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "dashboard-phone.png", docs=True)
    page.screenshot(path=str(screenshot_dir / "dashboard-phone-full.png"), full_page=True)
    context.close()


def test_keyboard_alone_charts_another_key(browser, dashboard_url, screenshot_dir):
    context, page = open_page(browser, DESKTOP, 1)
    page.goto(dashboard_url)
    wait_loaded(page)
    assert "legal (topic)" in page.locator("#chart-title").inner_text()
    before = page.evaluate("document.getElementById('chart').toDataURL()")

    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        if focused.strip() == "markets":
            break
    else:
        pytest.fail("Tab never reached the 'markets' row of the key table")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")

    assert "markets (topic)" in page.locator("#chart-title").inner_text()
    assert "markets (topic)" in page.locator("#chart").get_attribute("aria-label")
    assert page.locator("#key").input_value() == "topic:markets"
    assert page.get_by_role("button", name="markets").get_attribute("aria-pressed") == "true"
    assert page.get_by_role("button", name="legal", exact=True).get_attribute("aria-pressed") == (
        "false"
    )
    assert page.evaluate("document.getElementById('chart').toDataURL()") != before
    save_screenshot(page, screenshot_dir, "dashboard-keyboard.png")

    # an alert's "Show on the chart" switches to its kind (companies) and charts its key
    page.get_by_role("button", name="Show QNTV on the chart").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('chart-title').textContent.includes('QNTV')")
    assert page.locator("#kind").input_value() == "entity"
    assert "QNTV (company)" in page.locator("#chart").get_attribute("aria-label")
    context.close()


def test_api_down_keeps_last_data_says_what_failed_and_retries(
    browser, dashboard_url, screenshot_dir
):
    context, page = open_page(browser, DESKTOP, 1)
    page.goto(dashboard_url)
    wait_loaded(page)
    alerts_before = page.locator("#alerts li.alert").count()
    assert alerts_before == 2  # legal (topic) and QNTV (company)
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))

    page.select_option("#kind", "entity")  # the next request fails
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    text = problem.inner_text()
    assert "Could not load the alert list and the companies chart data." in text
    assert "did not answer" in text and "/api/series?kind=entity" in text
    assert "Still showing the topics loaded at" in text
    assert "Next automatic try in" in text
    assert page.get_by_role("button", name="Retry now").is_visible()
    page.wait_for_timeout(2500)  # the error stays: nothing overwrites it while the API is down
    assert problem.is_visible()
    assert page.locator("#status").inner_text().startswith("Offline · showing data from ")
    # the last good data stays visible
    assert page.locator("#keys tbody tr").count() == 2
    assert "legal" in page.locator("#keys tbody").inner_text()
    assert page.locator("#alerts li.alert").count() == alerts_before
    assert "legal (topic)" in page.locator("#chart").get_attribute("aria-label")
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "dashboard-api-down.png")

    page.unroute("**/api/**")
    page.get_by_role("button", name="Retry now").click()
    problem.wait_for(state="hidden")
    page.wait_for_function("document.querySelector('#keys tbody').innerText.includes('QNTV')")
    assert not page.locator("#status").inner_text().startswith("Offline")
    context.close()


def test_api_down_from_the_start_explains_and_recovers_by_itself(
    browser, dashboard_url, screenshot_dir
):
    context, page = open_page(browser, PHONE, 2, mobile=True)
    page.route(
        "**/api/**",
        lambda route: route.fulfill(
            status=503, json={"error": "unavailable", "message": "Redis is restarting"}
        ),
    )
    page.goto(dashboard_url)
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    text = problem.inner_text()
    assert "HTTP 503: Redis is restarting" in text
    assert "Nothing to show until it loads." in text
    assert page.locator("#status").inner_text() == "Offline · no data yet"
    assert "could not be loaded" in page.locator("#alerts-empty").inner_text()
    assert page.locator("#chart").get_attribute("aria-label") == "No data loaded yet."
    assert page.locator("#keys-empty").inner_text() == "No keys loaded yet."
    key_menu = page.get_by_role("combobox", name="Key")  # no empty menu to open: it says why
    assert key_menu.is_disabled()
    assert key_menu.locator("option").all_inner_texts() == ["No keys loaded yet"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert axe_violations(page) == []
    save_screenshot(page, screenshot_dir, "dashboard-api-down-phone.png")

    page.unroute("**/api/**")  # the API comes back: the page retries on its own within 5 s
    page.wait_for_selector("#keys tbody tr", timeout=10_000)
    assert problem.is_hidden()
    assert page.locator("#alerts li.alert").count() == 2
    assert key_menu.is_enabled()  # the keys have arrived
    assert sorted(key_menu.locator("option").all_inner_texts()) == ["legal", "markets"]
    assert key_menu.input_value() == "topic:legal"
    context.close()


def test_a_new_alert_arrives_live_on_top_and_is_announced(browser, dashboard, screenshot_dir):
    context, page = open_page(browser, DESKTOP, 1)
    page.goto(dashboard.url)
    wait_loaded(page)

    surge = markets_items(100, 20, lambda i: i < 19, start=T0 + 5 * 300, every=10)
    dashboard.pipeline.process(surge)
    dashboard.store.ack_alerts(dashboard.store.pending_alerts())

    first = page.locator("#alerts li.alert").first
    page.wait_for_function(
        "document.querySelector('#alerts li.alert h3').textContent.includes('markets')"
    )
    assert "95 % negative vs 36 % usual, 19 of 20 headlines" in first.inner_text()
    assert page.locator("#alerts li.alert").count() == 4  # markets (topic) and ACME (company)
    page.wait_for_function("document.getElementById('announce').textContent !== ''")
    announced = page.locator("#announce").inner_text()
    assert announced.startswith("2 new alerts: ")
    assert "markets (topic)" in announced and "ACME (company)" in announced
    context.close()


def test_empty_dashboard_says_there_is_nothing_yet(
    browser, redis_settings, redis_prefix, live_server, screenshot_dir
):
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    context, page = open_page(browser, DESKTOP, 1)
    page.goto(live_server(create_app(config, open_resources(config, redis_settings))))
    page.wait_for_function("document.getElementById('status').dataset.state === 'live'")
    assert page.locator("#alerts-empty").inner_text().startswith("No alerts yet.")
    assert page.locator("#keys-empty").inner_text().startswith("No keys yet:")
    assert page.locator("#chart-title").inner_text().startswith("No keys yet:")
    assert page.locator("#key").is_disabled()
    assert page.locator("#key option").all_inner_texts() == ["No keys yet"]
    assert axe_violations(page) == []
    context.close()


def test_a_long_alert_feed_shows_the_latest_five_until_asked(browser, dashboard_url):
    alerts = [
        {
            "event_id": f"{1714550400000 + i}-0",
            "alert_id": f"a-{i}",
            "key": f"topic:t{i}",
            "kind": "topic",
            "name": f"t{i}",
            "window_start_ts": T0 + 300 * i,
            "window_end_ts": T0 + 300 * (i + 1),
            "detected_at": "2024-05-01T09:00:00Z",
            "stage": "window_closed",
            "evidence": {
                "total": 20,
                "negative": 15,
                "negative_share": 0.75,
                "baseline_share": 0.1,
                "baseline_windows": 4,
                "z": 9.7,
                "z_threshold": 2.33,
                "examples": [],
            },
        }
        for i in range(7)
    ]
    context, page = open_page(browser, DESKTOP, 1)
    page.route("**/api/alerts?*", lambda route: route.fulfill(json={"alerts": alerts}))
    page.route("**/api/alerts/stream*", lambda route: route.abort())  # only the 7 above
    page.goto(dashboard_url)
    page.wait_for_selector("#alerts li.alert")
    shown = page.locator("#alerts li.alert:visible")
    assert shown.count() == 5
    assert page.locator("#alerts-more").get_attribute("aria-expanded") == "false"
    assert shown.first.locator("h3").inner_text().endswith("t6 (topic)")  # newest first
    page.get_by_role("button", name="Show all 7 alerts").click()
    more = page.locator("#alerts-more")
    assert shown.count() == 7
    assert more.get_attribute("aria-expanded") == "true"
    assert more.inner_text() == "Show only the latest 5"
    context.close()


def test_an_unreadable_answer_is_reported_and_retried(browser, dashboard_url):
    context, page = open_page(browser, DESKTOP, 1)
    page.route("**/api/series?*", lambda route: route.fulfill(json={"unexpected": []}))
    page.goto(dashboard_url)
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    assert "Could not load the topics chart data." in problem.inner_text()
    assert "The answer was not in the expected format" in problem.inner_text()
    page.wait_for_selector("#alerts li.alert")  # what did load is shown
    page.unroute("**/api/series?*")
    page.get_by_role("button", name="Retry now").click()
    problem.wait_for(state="hidden")
    page.wait_for_selector("#keys tbody tr")
    context.close()


def test_the_live_feed_backs_off_while_it_cannot_connect(browser, dashboard_url):
    """The browser's own reconnect tried every few seconds, forever, each try a console error."""
    context, page = open_page(browser, DESKTOP, 1)
    tries: list[str] = []
    page.on("request", lambda request: "/api/alerts/stream" in request.url and tries.append("x"))
    page.route("**/api/alerts/stream**", lambda route: route.abort("connectionrefused"))
    page.goto(dashboard_url)
    page.wait_for_selector("#keys tbody tr")
    page.wait_for_timeout(12_000)
    assert 1 <= len(tries) <= 3  # at once, after 5 s, after 10 more: not every 2-3 s
    assert "live feed reconnecting" in page.locator("#status").inner_text()
    page.unroute("**/api/alerts/stream**")
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'live'", timeout=30_000
    )
    context.close()


def test_the_live_feed_renews_itself_quietly_and_misses_no_alert(browser, dashboard, monkeypatch):
    """Each feed ends after its life (here 1 s); the page reconnects from where it ended, the
    status stays live, and an alert published meanwhile still arrives."""
    monkeypatch.setattr(importlib.import_module(FEED_API), "FEED_MAX_S", 1)
    context, page = open_page(browser, DESKTOP, 1)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/alerts/stream" in r.url else None)
    page.add_init_script(
        """document.addEventListener("DOMContentLoaded", () => {
          window.statusStates = [];
          const status = document.getElementById("status");
          new MutationObserver(() => window.statusStates.push(status.dataset.state))
            .observe(status, { attributes: true, attributeFilter: ["data-state"] });
        });"""
    )
    page.goto(dashboard.url)
    wait_loaded(page)
    for _ in range(300):  # a safety net: three renewals take about 3 s
        if len(streams) >= 4:
            break
        page.wait_for_timeout(200)
    assert len(streams) >= 4, streams
    surge = markets_items(100, 20, lambda i: i < 19, start=T0 + 5 * 300, every=10)
    dashboard.pipeline.process(surge)
    dashboard.store.ack_alerts(dashboard.store.pending_alerts())
    page.wait_for_function(
        "document.querySelector('#alerts li.alert h3').textContent.includes('markets')"
    )
    states = page.evaluate("window.statusStates")
    assert "warn" not in states[states.index("live") :], states
    assert page.locator("#problem").is_hidden()
    context.close()
