"""The dashboard page in headless Chromium: charts and tables fill, alerts render as text."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.web import create_app

from .conftest import calm_then_surge

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">Quantive'


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
