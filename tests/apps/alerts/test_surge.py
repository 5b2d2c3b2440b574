from __future__ import annotations

import pytest

from threefold.apps.alerts.surge import (
    Baseline,
    SurgeRule,
    alert_id,
    build_alert,
    decide,
    early_alert_allowed,
    wilson_lower,
    z_score,
)
from threefold.apps.alerts.windows import WindowCounts

RULE = SurgeRule(min_volume=10, z_threshold=2.33, share_margin=0.15, prior_share=0.2)


def counts(total: int, negative: int) -> WindowCounts:
    return WindowCounts("entity:QNTV", 600, 900, total=total, negative=negative, examples=["bad"])


def test_clear_surge_over_baseline_alerts():
    decision = decide(counts(20, 14), Baseline(0.15, 20, 5), RULE)
    assert decision.surge
    assert decision.z > 5


def test_low_volume_never_alerts_even_when_all_negative():
    decision = decide(counts(9, 9), Baseline(0.1, 20, 5), RULE)
    assert not decision.surge
    assert "volume 9 < 10" in decision.reason


def test_share_at_baseline_does_not_alert():
    assert not decide(counts(40, 8), Baseline(0.2, 40, 5), RULE).surge


def test_significant_but_small_increase_is_below_the_margin():
    decision = decide(counts(2000, 500), Baseline(0.2, 2000, 5), RULE)
    assert decision.z > RULE.z_threshold
    assert not decision.surge
    assert "margin" in decision.reason


def test_without_history_the_prior_share_is_the_baseline():
    assert decide(counts(12, 3), None, RULE).baseline_share == 0.2
    assert decide(counts(12, 10), None, RULE).surge


def test_zero_baseline_keeps_z_finite():
    assert z_score(5, 10, 0.0) == pytest.approx((0.5 - 0.02) / (0.02 * 0.98 / 10) ** 0.5)


def test_wilson_lower_bound_is_below_the_share():
    assert 0 < wilson_lower(14, 20) < 0.7
    assert wilson_lower(0, 0) == 0.0


def test_ewma_baseline():
    first = Baseline(0.0, 0.0, 0).updated(counts(10, 2), alpha=0.5)
    assert first == Baseline(0.2, 10.0, 1)
    second = first.updated(counts(30, 12), alpha=0.5)
    assert second == Baseline(pytest.approx(0.3), pytest.approx(20.0), 2)


def test_alert_id_is_deterministic_per_key_and_window():
    assert alert_id("entity:QNTV", 600, 900) == alert_id("entity:QNTV", 600, 900)
    assert alert_id("entity:QNTV", 600, 900) != alert_id("entity:QNTV", 900, 1200)
    assert alert_id("entity:QNTV", 600, 900) != alert_id("topic:legal", 600, 900)


def test_alert_carries_the_evidence():
    c = counts(20, 14)
    baseline = Baseline(0.15, 20, 5)
    alert = build_alert(c, decide(c, baseline, RULE), baseline, RULE, stage="early", detected_at=0)
    assert alert["alert_id"] == alert_id("entity:QNTV", 600, 900)
    assert (alert["kind"], alert["name"]) == ("entity", "QNTV")
    assert alert["window_start"] == "1970-01-01T00:10:00Z"
    evidence = alert["evidence"]
    assert (evidence["total"], evidence["negative"]) == (20, 14)
    assert evidence["negative_share"] == 0.7
    assert evidence["baseline_share"] == 0.15
    assert evidence["examples"] == ["bad"]


def test_early_alerts_on_a_forming_baseline_need_overwhelming_evidence():
    forming = Baseline(0.1, 20.0, 1)
    clear = WindowCounts("entity:X", 0, 300, total=12, negative=6, neutral=6)
    assert decide(clear, forming, RULE).surge  # a surge once the window is closed
    assert not early_alert_allowed(clear, forming, RULE)  # 6 of its usual 20 is not enough yet
    overwhelming = WindowCounts("entity:X", 0, 300, total=20, negative=19, neutral=1)
    assert early_alert_allowed(overwhelming, forming, RULE)


def test_without_history_only_an_overwhelming_window_alerts_early():
    busy = WindowCounts("entity:X", 0, 300, total=30, negative=13, neutral=17)
    assert decide(busy, None, RULE).surge  # 43% against the 20% prior
    assert not early_alert_allowed(busy, None, RULE)
    assert early_alert_allowed(WindowCounts("entity:X", 0, 300, 30, 28, 2), None, RULE)


def test_a_formed_baseline_allows_an_early_alert_on_a_clear_surge():
    formed = Baseline(0.1, 20.0, 4)
    assert early_alert_allowed(WindowCounts("entity:X", 0, 300, 12, 10, 2), formed, RULE)


def under(model: str, total: int, negative: int) -> WindowCounts:
    return WindowCounts("entity:QNTV", 600, 900, total=total, negative=negative, models=[model])


def test_a_new_scoring_model_restarts_the_baseline_and_it_forms_again():
    """After a promotion the new model's negative share is not the old one's: judged against
    the old baseline, every key alerted in the same window."""
    old = Baseline(0.1, 20.0, 5, model="m1")
    assert old.updated(under("m1", 20, 4), alpha=0.5).model_from == 0
    restarted = old.updated(under("m2", 20, 7), alpha=0.5)
    assert restarted == Baseline(0.35, 20.0, 6, model="m2", model_from=5)
    decision = decide(under("m2", 20, 14), restarted, RULE)
    assert not decision.surge
    assert decision.reason == "baseline forming under model m2: 1 of 3 windows"
    formed = restarted.updated(under("m2", 20, 7), 0.5).updated(under("m2", 20, 7), 0.5)
    assert decide(under("m2", 20, 16), formed, RULE).surge


def test_a_window_scored_by_another_model_than_its_baseline_does_not_alert():
    decision = decide(under("m2", 20, 14), Baseline(0.1, 20.0, 5, model="m1"), RULE)
    assert not decision.surge
    assert decision.reason == "scored by model m2, the baseline by m1: baseline forming"
    assert not early_alert_allowed(under("m2", 20, 20), Baseline(0.1, 20.0, 5, model="m1"), RULE)


def test_a_baseline_from_before_models_were_recorded_adopts_the_model_without_restarting():
    legacy = Baseline(0.1, 20.0, 5)
    assert legacy.updated(under("m1", 20, 2), 0.5).model_from == 0
    assert decide(under("m1", 20, 14), legacy, RULE).surge


def test_alert_evidence_names_the_scoring_models():
    window = under("sentiment=s2,topic=t1", 20, 14)
    baseline = Baseline(0.15, 20, 5, model="sentiment=s2,topic=t1")
    alert = build_alert(
        window, decide(window, baseline, RULE), baseline, RULE, stage="window_closed", detected_at=0
    )
    assert alert["evidence"]["models"] == ["sentiment=s2,topic=t1"]
    assert alert["evidence"]["baseline_model"] == "sentiment=s2,topic=t1"
