"""The A/B readout: counts per variant, CTR, and the two-proportion test against the control."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry

from threefold.apps.recs.ab_report import ab_report, two_proportion_test
from threefold.apps.recs.events import Event
from threefold.apps.recs.impressions import Impression, ImpressionLog, MemoryImpressionStore
from threefold.apps.recs.metrics import RecsMetrics


def test_the_z_test_and_interval_match_the_textbook_formulas() -> None:
    result = two_proportion_test(100, 1000, 130, 1000)
    pooled = 230 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert result["diff"] == pytest.approx(0.03)
    assert result["z"] == pytest.approx(z) == pytest.approx(2.1027, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.0355, abs=1e-4)
    half = 1.959964 * math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert result["ci_low"] == pytest.approx(0.03 - half)
    assert result["ci_high"] == pytest.approx(0.03 + half)


def test_equal_rates_are_not_significant_and_no_trials_give_no_test() -> None:
    same = two_proportion_test(50, 500, 50, 500)
    assert same["z"] == 0.0 and same["p_value"] == pytest.approx(1.0)
    assert two_proportion_test(0, 0, 3, 10)["p_value"] is None


def test_the_report_sums_versions_per_variant_and_compares_with_the_control() -> None:
    counts = {
        "v1": {"v1": {"lists": 10, "shown": 100, "click": 12, "purchase": 1}},
        "current": {
            "v2": {"lists": 6, "shown": 60, "click": 3},
            "v3": {"lists": 4, "shown": 40, "click": 2, "purchase": 2},
        },
    }
    report = ab_report(counts)
    assert list(report["variants"]) == ["current", "v1"]  # the control first
    control, pinned = report["variants"]["current"], report["variants"]["v1"]
    assert {k: control[k] for k in ("lists", "shown", "click", "purchase", "ctr")} == {
        "lists": 10, "shown": 100, "click": 5, "purchase": 2, "ctr": 0.05
    }  # fmt: skip
    assert control["versions"]["v3"]["ctr"] == 0.05 and "vs_control" not in control
    assert pinned["ctr"] == 0.12 and pinned["purchase_rate"] == 0.01
    assert pinned["vs_control"] == two_proportion_test(5, 100, 12, 100)
    assert report["metric"] == "ctr" and report["confidence"] == 0.95


def test_the_worker_store_counts_lists_and_attributed_clicks_per_variant() -> None:
    registry = CollectorRegistry()
    log = ImpressionLog(MemoryImpressionStore(), RecsMetrics(registry))
    log.record(Impression("a", "u1", "v2", ("x", "y"), variant="current"))
    log.record(Impression("b", "u2", "v1", ("x", "z", "w"), variant="v1"))
    log.attribute(
        [
            Event("u1", "y", "click", 1.0, list_id="a"),
            Event("u2", "z", "purchase", 2.0, list_id="b"),
            Event("u2", "y", "click", 3.0, list_id="b"),  # not shown in that list
        ]
    )
    assert log.ab_counts() == {
        "current": {"v2": {"lists": 1, "shown": 2, "click": 1}},
        "v1": {"v1": {"lists": 1, "shown": 3, "purchase": 1}},
    }
    sample = registry.get_sample_value
    assert sample("recs_ab_impressions_total", {"variant": "v1", "version": "v1"}) == 1
    assert sample("recs_ab_shown_total", {"variant": "v1", "version": "v1"}) == 3
    assert sample("recs_ab_clicks_total", {"variant": "current", "version": "v2"}) == 1
    assert sample("recs_ab_purchases_total", {"variant": "v1", "version": "v1"}) == 1
    assert sample("recs_ab_clicks_total", {"variant": "v1", "version": "v1"}) is None


def test_ab_report_without_redis_says_where_the_counts_are() -> None:
    from click.testing import CliRunner

    from threefold.apps.cli import cli
    from threefold.streaming.services import free_port

    unset = CliRunner().invoke(cli, ["recs", "ab-report"], env={"REDIS_URL": ""})
    assert unset.exit_code == 1 and "REDIS_URL is unset" in unset.output
    down = CliRunner().invoke(
        cli, ["recs", "ab-report"], env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    assert down.exit_code == 1 and "does not answer" in down.output


@pytest.mark.integration
def test_ab_report_without_the_registry_still_reports_and_says_what_it_did_not_check(
    redis_url: str, redis_prefix: str, tmp_path
) -> None:
    """The counts are in Redis; only the missing-version check needs the registry entry."""
    from click.testing import CliRunner

    from threefold.apps.cli import cli

    env = {
        "REDIS_URL": redis_url,
        "THREEFOLD_RECS_REDIS_PREFIX": redis_prefix,
        "THREEFOLD_RECS_AB_VARIANTS": "current:50,v1:50",
        "THREEFOLD_RECS_MODEL_DIR": str(tmp_path / "not-mounted-here"),
    }
    result = CliRunner().invoke(cli, ["recs", "ab-report"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [warning] = json.loads(result.stdout)["warnings"]
    assert warning.startswith("pinned versions not checked: THREEFOLD_RECS_AB_VARIANTS=")
