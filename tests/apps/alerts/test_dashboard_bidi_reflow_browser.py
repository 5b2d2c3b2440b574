"""The dashboard with headlines in Arabic and Hebrew beside English ones: each headline takes its
own direction (dir="auto") in an English page; and the whole page at 320 px wide with 200 %
text: no sideways scrolling, no text sticking out of its box, axe-core clean."""

from __future__ import annotations

import pytest
from support.browser import axe_violations
from support.reflow import direction, overflow_problems, zoom_text

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.web import create_app

from .conftest import calm_then_surge
from .test_dashboard_browser import DESKTOP, PHONE, open_page, wait_loaded

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ARABIC = "مرحبا, Quantive shares slide 8% after Q3 report"
HEBREW = "שלום, מניות Apex Robotics ירדו ב-12% היום"
ENGLISH = "Apex Robotics recalls robots after safety fault"
EXAMPLE = "الأسهم تتراجع بعد تقرير Quantive عن الربع 3"
NARROW = {"width": 320, "height": 640}

TEXT_ENDS_AT_RIGHT = """(node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const text = range.getBoundingClientRect(), box = node.getBoundingClientRect();
  return box.right - parseFloat(getComputedStyle(node).paddingRight) - text.right < 2;
}"""


@pytest.fixture
def dashboard_url(redis_settings, redis_store, redis_prefix, live_server) -> str:
    """A surge of "legal" whose example headlines are Arabic, and three scored headlines."""
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0, analyst_tokens="ana:ana-secret")
    pipeline = AlertPipeline.from_config(config, redis_store)
    items = calm_then_surge()
    for scored in items[-20:-16]:  # the surge's first negatives: the alert's examples
        scored.item.text = EXAMPLE
    for i in range(0, len(items), 20):
        pipeline.process(items[i : i + 20])
    redis_store.ack_alerts(redis_store.pending_alerts())
    resources = open_resources(config, redis_settings)
    resources.signals.record_scored(
        [
            {
                "id": f"m{i}",
                "text": text,
                "topic": "product",
                "sentiment": "neutral",
                "models": {"topic": "v1", "sentiment": "v2"},
                "event_time": "2024-05-01T08:00:00Z",
                "source": "wire",
            }
            for i, text in enumerate([ARABIC, HEBREW, ENGLISH])
        ]
    )
    return live_server(create_app(config, resources))


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_headlines_and_examples_take_their_own_direction(
    browser, dashboard_url, screenshot_dir, size
) -> None:
    context, page = open_page(browser, DESKTOP if size == "desktop" else PHONE, 1)
    try:
        page.goto(dashboard_url)
        wait_loaded(page)
        page.wait_for_selector("#headlines tbody tr")
        cells = {
            text: page.locator("#headlines td.headline", has_text=text)
            for text in (ARABIC, HEBREW, ENGLISH)
        }
        for text, cell in cells.items():
            assert cell.get_attribute("dir") == "auto", text
        assert direction(cells[ARABIC]) == "rtl" and direction(cells[HEBREW]) == "rtl"
        assert cells[ARABIC].evaluate(TEXT_ENDS_AT_RIGHT)  # right-aligned in its cell
        assert direction(cells[ENGLISH]) == "ltr"
        example = page.locator("#alerts .examples li").first
        assert example.inner_text() == EXAMPLE and direction(example) == "rtl"
        for chrome in ("header", "#alerts .alert h3", "#headlines caption", "#keys th"):
            assert direction(page.locator(chrome).first) == "ltr", chrome
        assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / f"dashboard-bidi-{size}.png"), full_page=True)
    finally:
        context.close()


def test_dashboard_reflows_at_320_px_with_200_percent_text(
    browser, dashboard_url, screenshot_dir
) -> None:
    context, page = open_page(browser, NARROW, 1)
    try:
        page.goto(dashboard_url)
        wait_loaded(page)
        page.wait_for_selector("#headlines tbody tr")
        page.locator("#chart-data summary").click()  # the data table open too
        zoom_text(page)
        page.wait_for_timeout(200)  # the chart redraws at its new size
        assert overflow_problems(page) == []
        assert axe_violations(page) == []
        page.screenshot(path=str(screenshot_dir / "dashboard-320-text-200.png"), full_page=True)
    finally:
        context.close()
