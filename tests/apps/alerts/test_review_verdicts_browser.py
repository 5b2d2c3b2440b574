"""The review panel shows the verdict of each alert on the page, however many verdicts on other
alerts were stored since (it asks GET /api/verdicts for the alerts it shows, not a first page)."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.signals import make_verdict

from .test_dashboard_browser import DESKTOP, open_page
from .test_review_browser import review  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]


def test_an_alert_shows_its_verdict_after_many_newer_ones_on_other_alerts(browser, review):  # noqa: F811
    url, signals = review
    context, page = open_page(browser, DESKTOP, 1)
    page.goto(url)
    page.wait_for_selector("#alerts li.alert")
    shown = page.locator("#alerts li.alert").first
    alert_id = shown.get_attribute("data-alert-id")
    judged = make_verdict({"alert_id": alert_id}, "true_alarm", analyst="bob", note="", now=1.0)
    signals.save_verdict(judged)
    for n in range(150):  # more than a page of GET /api/verdicts, all newer
        other = {"alert_id": f"a-older-{n}"}
        signals.save_verdict(make_verdict(other, "false_alarm", analyst="ana", note="", now=2 + n))

    page.fill("#analyst-token", "ana-secret")
    page.press("#analyst-token", "Enter")
    page.wait_for_function("document.body.dataset.analyst === 'ana'")
    shown.locator(".verdict-status", has_text="Marked a true alarm by bob.").wait_for()
    assert shown.locator("[data-verdict=true_alarm]").get_attribute("aria-pressed") == "true"
    context.close()
