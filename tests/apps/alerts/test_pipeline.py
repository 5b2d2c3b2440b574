"""The aggregate -> decide chain on hand-made scored items (no broker, in-memory state)."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.surge import SurgeRule
from threefold.apps.alerts.windows import WindowSpec

from .conftest import T0, calm_then_surge, make_scored

LATER = T0 + 365 * 24 * 3600  # the wall clock: after every event time here
RULE = SurgeRule(min_volume=10, z_threshold=2.33, share_margin=0.15, prior_share=0.2)


@pytest.fixture
def pipeline() -> AlertPipeline:
    spec = WindowSpec(size_s=300, slide_s=300, grace_s=30)
    return AlertPipeline(spec, RULE, InMemoryStateStore(), cooldown_s=900, clock=lambda: LATER)


def run(pipeline: AlertPipeline, items, batch: int = 16) -> list[dict]:
    alerts = []
    for i in range(0, len(items), batch):
        alerts += pipeline.process(items[i : i + batch]).alerts
    return alerts


def test_surge_after_calm_baseline_raises_one_alert_per_key(pipeline):
    alerts = run(pipeline, calm_then_surge())
    assert sorted(a["key"] for a in alerts) == ["entity:QNTV", "topic:legal"]
    alert = next(a for a in alerts if a["key"] == "entity:QNTV")
    assert alert["stage"] == "early"  # raised before the surge window closed
    assert alert["window_start_ts"] == T0 + 4 * 300
    assert alert["evidence"]["baseline_windows"] == 4
    assert alert["evidence"]["baseline_share"] == pytest.approx(0.1)
    assert alert["evidence"]["negative"] >= RULE.min_volume
    assert len(alert["evidence"]["examples"]) == 3
    assert pipeline.store.pending_alerts() == sorted(
        alerts, key=lambda a: (a["window_end_ts"], a["key"])
    )


def test_calm_stream_raises_nothing(pipeline):
    assert run(pipeline, calm_then_surge(calm_windows=6, surge=2)) == []


def test_redelivered_messages_are_not_counted_twice(pipeline):
    items = calm_then_surge()
    surge_part = items[-20:]
    run(pipeline, items[:-10])
    first = pipeline.process(surge_part)  # half of it again, as after a crash
    assert first.duplicates == 10
    assert run(pipeline, surge_part) == []
    (window,) = pipeline.store.open_windows("entity:QNTV")
    assert window.total == 20


def test_closing_the_window_after_an_early_alert_does_not_alert_again(pipeline):
    early = run(pipeline, calm_then_surge())
    closing = make_scored("later", T0 + 6 * 300 + 40, "neutral")
    result = pipeline.process([closing])
    assert result.windows_closed >= 1
    assert result.alerts == []
    assert result.suppressed == {"duplicate": len(early)}


def test_cooldown_suppresses_the_next_window_of_the_same_key(pipeline):
    run(pipeline, calm_then_surge())
    start = T0 + 5 * 300
    second_surge = [make_scored(f"again-{i}", start + i * 10, "negative") for i in range(20)]
    result = pipeline.process(second_surge)
    assert result.alerts == []
    assert result.suppressed.get("cooldown", 0) >= 2


def test_late_messages_are_flagged_and_not_aggregated(pipeline):
    pipeline.process([make_scored("now", T0 + 1000, "neutral")])
    late = make_scored("old", T0 + 10, "negative")
    on_time = make_scored("recent", T0 + 1000 - 5, "negative")
    result = pipeline.process([late, on_time])
    assert result.late == 1
    assert late.late and not on_time.late
    assert late.to_dict()["late"] is True


def test_message_within_grace_is_still_counted(pipeline):
    pipeline.process([make_scored("a", T0 + 310, "neutral")])  # watermark T0 + 280
    result = pipeline.process([make_scored("b", T0 + 200, "negative")])
    assert result.late == 0
    (window,) = pipeline.store.counts([("entity:QNTV", T0, T0 + 300)])
    assert window.total == 1


def test_sliding_windows_alert_once_within_cooldown():
    spec = WindowSpec(size_s=300, slide_s=100, grace_s=0)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), cooldown_s=900)
    alerts = run(pipeline, calm_then_surge(calm_windows=4))
    assert sorted(a["key"] for a in alerts) == ["entity:QNTV", "topic:legal"]


def test_entity_surge_drowned_in_its_topic_still_alerts_for_the_entity():
    spec = WindowSpec(300, 300, 0)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore())
    items = []
    for w in range(5):
        for i in range(200):  # the topic: 10% negative news about NWB in every window
            sentiment = "negative" if i % 10 == 0 else "neutral"
            items.append(
                make_scored(f"{w}-{i}", T0 + w * 300 + i * 1.4, sentiment, entities=["NWB"])
            )
        hlx = "neutral" if w < 4 else "negative"  # HLX: 4 calm windows, then 12 negatives
        for i in range(4 if w < 4 else 12):
            t = T0 + w * 300 + i * 20  # spread over the window
            items.append(make_scored(f"h{w}-{i}", t, hlx, entities=["HLX"]))
    alerts = run(pipeline, sorted(items, key=lambda s: s.item.event_time), batch=64)
    assert [a["key"] for a in alerts] == ["entity:HLX"]


def test_a_lagging_partition_holds_the_watermark_back(pipeline):
    pipeline.register_partitions(["news:0", "news:1"])
    ahead = [make_scored(f"a{i}", T0 + 900 + i, "neutral") for i in range(3)]
    pipeline.process(ahead, ["news:0"] * 3)
    assert pipeline.store.watermark() == 0.0  # news:1 has not delivered anything yet
    behind = make_scored("b", T0 + 10, "negative")
    result = pipeline.process([behind], ["news:1"])
    assert result.late == 0 and not behind.late
    assert pipeline.store.watermark() == T0 + 10 - 30


def test_an_idle_partition_stops_holding_the_watermark_back(pipeline):
    pipeline.register_partitions(["news:0", "news:1"])
    pipeline.process([make_scored("a", T0 + 900, "neutral")], ["news:0"])
    pipeline.process(
        [make_scored("b", T0 + 901, "neutral")], ["news:0"], idle_partitions=["news:1"]
    )
    assert pipeline.store.watermark() == T0 + 901 - 30
    late = make_scored("c", T0 + 5, "negative")
    assert pipeline.process([late], ["news:1"]).late == 1


def test_advancing_a_quiet_stream_closes_its_due_windows(pipeline):
    pipeline.register_partitions(["news:0"])
    pipeline.process([make_scored("a", T0 + 290, "neutral")], ["news:0"])
    assert pipeline.store.open_windows() != []
    result = pipeline.advance({"news:0": T0 + 299})  # not past the window's end yet
    assert result.windows_closed == 0 and result.watermark == T0 + 299
    result = pipeline.advance({"news:0": T0 + 300})
    assert result.windows_closed == 2  # its topic and its entity
    assert pipeline.store.open_windows() == []
    assert [h["total"] for h in pipeline.store.history("entity:QNTV")] == [1]


def test_a_message_stamped_ahead_of_the_clock_does_not_make_real_time_news_late(caplog):
    """One headline stamped 58 minutes ahead (a feed's local time read as UTC) moved its
    partition's watermark past the clock: every real-time headline after it was late, not
    counted, and no alert could fire for an hour."""
    now = T0 + 10_000
    spec = WindowSpec(size_s=300, slide_s=300, grace_s=60)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), clock=lambda: now)
    pipeline.process([make_scored("before", now - 5, "neutral")])
    ahead = pipeline.process([make_scored("ahead", now + 3500, "negative")])
    assert ahead.ahead_of_clock == 1
    assert ahead.watermark == now - spec.grace_s  # held at the clock, not at now + 3500
    (record,) = [r for r in caplog.records if "ahead of the clock" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert record.fields == {
        "event": "event_time_ahead_of_clock",
        "messages": 1,
        "most_ahead_s": 3500.0,
        "grace_s": 60,
    }
    after = pipeline.process([make_scored(f"real-{i}", now + 1, "neutral") for i in range(5)])
    assert (after.late, after.ahead_of_clock) == (0, 0)
    (ahead_window,) = pipeline.store.open_windows("entity:QNTV")[-1:]
    assert ahead_window.start == spec.windows_for(now + 3500)[0][0]  # still counted


def test_the_ahead_of_clock_warning_comes_at_most_once_a_minute_with_the_count(caplog):
    """A feed steadily ahead gave one warning per batch."""
    clock = [T0 + 10_000]
    spec = WindowSpec(size_s=300, slide_s=300, grace_s=60)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), clock=lambda: clock[0])
    for step in range(4):  # a batch every 20 s, each 90 s ahead
        clock[0] += 20
        batch = [make_scored(f"m{step}-{i}", clock[0] + 90, "neutral") for i in range(2)]
        assert pipeline.process(batch).ahead_of_clock == 2
    warnings = [r for r in caplog.records if "ahead of the clock" in r.getMessage()]
    assert [r.fields["messages"] for r in warnings] == [2, 6]  # the first, then after 60 s


def test_quiet_close_does_not_move_the_watermark_past_the_clock():
    now = T0 + 10_000
    spec = WindowSpec(size_s=300, slide_s=300, grace_s=60)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), clock=lambda: now)
    assert pipeline.advance({"news:0": now + 3600}).watermark == now - spec.grace_s


def test_a_model_swap_makes_baselines_form_again_instead_of_alerting_on_every_key():
    """The promoted model calls 1 headline in 3 negative where the old one called 1 in 10:
    judged against the old baselines, every key alerted in the same window."""
    spec = WindowSpec(size_s=300, slide_s=300, grace_s=0)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), clock=lambda: LATER)
    alerts = []
    for w in range(10):
        version = "s1" if w < 5 else "s2"
        items = []
        for entity in ("NWB", "APXR"):
            for i in range(20):
                surge = w == 9  # a real one, once the baseline has formed under s2
                negative = i < 16 if surge else i % (10 if version == "s1" else 3) == 0
                scored = make_scored(
                    f"{w}-{entity}-{i}",
                    T0 + w * 300 + i * 15,
                    "negative" if negative else "neutral",
                    entities=(entity,),
                )
                scored.models = {"topic": "t1", "sentiment": version}
                items.append(scored)
        alerts += pipeline.process(sorted(items, key=lambda s: s.item.event_time)).alerts
    assert sorted(a["key"] for a in alerts) == ["entity:APXR", "entity:NWB", "topic:legal"]
    assert {a["window_start_ts"] for a in alerts} == {T0 + 9 * 300}
    assert {tuple(a["evidence"]["models"]) for a in alerts} == {("sentiment=s2,topic=t1",)}
    baseline = pipeline.store.baselines(["entity:NWB"])["entity:NWB"]
    assert (baseline.model, baseline.model_from) == ("sentiment=s2,topic=t1", 5)
