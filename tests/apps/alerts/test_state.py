"""One contract for both state stores: in memory and in the real embedded Redis."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import open_state_store
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.state.store import (
    CLAIMED,
    CLOSED,
    COOLDOWN,
    COUNTED,
    DUPLICATE,
    SEEN,
    StateStore,
)
from threefold.apps.alerts.surge import Baseline
from threefold.apps.alerts.windows import Entry, WindowCounts


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request) -> StateStore:
    """Each contract test runs against both implementations."""
    if request.param == "memory":
        return InMemoryStateStore()
    return request.getfixturevalue("redis_store")


def entry(message_id: str, sentiment: str = "negative", key: str = "entity:QNTV", start=0):
    return Entry(key, start, start + 300, message_id, sentiment, f"text {message_id}")


def alert(key: str = "entity:QNTV", start: int = 0, end: int = 300) -> dict:
    return {"alert_id": f"a-{key}-{start}", "key": key, "window_end_ts": end, "summary": "s"}


def test_counts_each_message_once_per_window(store):
    statuses = store.add_entries(
        [entry("m1"), entry("m2", "neutral"), entry("m1"), entry("m3", "positive")], 3
    )
    assert statuses == [COUNTED, COUNTED, SEEN, COUNTED]
    assert store.add_entries([entry("m2", "neutral")], 3) == [SEEN]
    (counts,) = store.counts([("entity:QNTV", 0, 300)])
    assert (counts.total, counts.negative, counts.neutral, counts.positive) == (3, 1, 1, 1)
    assert counts.examples == ["text m1"]


def test_examples_are_negative_and_capped(store):
    store.add_entries([entry(f"m{i}") for i in range(5)] + [entry("p", "positive")], 2)
    (counts,) = store.counts([("entity:QNTV", 0, 300)])
    assert counts.examples == ["text m0", "text m1"]


def test_watermark_only_moves_forward_and_closes_windows_for_late_messages(store):
    assert store.watermark() is None
    assert store.advance_watermark({"news:0": 250}) == 250
    assert store.advance_watermark({"news:0": 100}) == 250
    store.add_entries([entry("m1", start=0), entry("m2", start=300)], 3)
    assert store.advance_watermark({"news:0": 300}) == 300
    assert store.add_entries([entry("late", start=0), entry("ok", start=300)], 3) == [
        CLOSED,
        COUNTED,
    ]
    assert store.due_windows(300) == [("entity:QNTV", 0, 300)]
    assert [c.key for c in store.open_windows("entity:QNTV")] == ["entity:QNTV", "entity:QNTV"]


def test_watermark_is_the_lowest_partition_watermark(store):
    assert store.advance_watermark({"news:0": 900, "news:1": 400}) == 400
    assert store.advance_watermark({"news:0": 1200}) == 400  # partition 1 holds it back
    assert store.advance_watermark({"news:1": 1000}) == 1000
    assert store.advance_watermark({"news:2": 10}) == 1000  # it never moves back
    assert store.advance_watermark({"news:0": 1300}) == 1000  # news:2 holds it now
    assert store.advance_watermark({}, idle=["news:1", "news:2"]) == 1300  # ... until idle


def test_alert_claim_is_idempotent_and_honours_cooldown(store):
    assert store.claim_alert(alert(start=0, end=300), cooldown_s=600) == CLAIMED
    assert store.claim_alert(alert(start=0, end=300), cooldown_s=600) == DUPLICATE
    assert store.claim_alert(alert(start=300, end=600), cooldown_s=600) == COOLDOWN
    assert store.claim_alert(alert(start=600, end=900), cooldown_s=600) == CLAIMED
    assert store.claim_alert(alert("topic:legal", 300, 600), cooldown_s=600) == CLAIMED
    assert [a["window_end_ts"] for a in store.pending_alerts()] == [300, 600, 900]


def test_acknowledged_alerts_leave_the_outbox_for_the_feed(store):
    first, second = alert(start=0, end=300), alert(start=900, end=1200)
    store.claim_alert(first, cooldown_s=0)
    store.claim_alert(second, cooldown_s=0)
    store.ack_alerts([first])
    store.ack_alerts([first])  # a second acknowledgement does not repeat it in the feed
    assert store.pending_alerts() == [second]
    assert [a["alert_id"] for _, a in store.recent_alerts()] == [first["alert_id"]]


def test_close_window_folds_it_into_the_baseline_exactly_once(store):
    store.add_entries([entry("m1"), entry("m2", "neutral")], 3)
    counts = WindowCounts("entity:QNTV", 0, 300, total=2, negative=1, neutral=1)
    new = Baseline(0.5, 2.0, 1)
    assert store.close_window(counts, expected_windows=1, new=new) == -1  # stale baseline
    assert store.close_window(counts, expected_windows=0, new=new) == 1
    assert store.close_window(counts, expected_windows=1, new=new) == 0  # already closed
    assert store.baselines(["entity:QNTV", "entity:NONE"]) == {"entity:QNTV": new}
    assert store.history("entity:QNTV")[0]["negative_share"] == 0.5
    assert store.due_windows(10_000) == []
    assert "entity:QNTV" in store.aggregation_keys()


def test_the_feed_is_read_after_an_entry_id(store) -> None:
    first, second = alert(start=0, end=300), alert(start=900, end=1200)
    store.claim_alert(first, cooldown_s=0)
    store.claim_alert(second, cooldown_s=0)
    store.ack_alerts([first, second])
    (second_id, _), (first_id, _) = store.recent_alerts()
    assert [a["alert_id"] for _, a in store.read_feed("0-0", block_ms=1)] == [
        first["alert_id"],
        second["alert_id"],
    ]
    assert store.read_feed(first_id, block_ms=1) == [(second_id, second)]
    assert store.read_feed(second_id, block_ms=1) == []
    assert store.read_feed("$", block_ms=1) == []  # only alerts acknowledged from now on


@pytest.mark.integration
def test_redis_state_survives_a_new_store_instance(redis_settings, redis_prefix):
    first = open_state_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)
    first.add_entries([entry("m1")], 3)
    first.advance_watermark({"news:0": 120})
    first.claim_alert(alert(), cooldown_s=0)
    again = open_state_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)
    assert again.watermark() == 120
    assert again.add_entries([entry("m1")], 3) == [SEEN]
    assert [a["alert_id"] for a in again.pending_alerts()] == [alert()["alert_id"]]
    assert again.claim_alert(alert(), cooldown_s=0) == DUPLICATE


def test_counting_in_several_script_calls_keeps_duplicates_apart(store, monkeypatch) -> None:
    monkeypatch.setattr("threefold.apps.alerts.state.redis_store.ADD_CHUNK", 2)
    entries = [entry("m1"), entry("m2"), entry("m1"), entry("m3", "neutral"), entry("m2")]
    assert store.add_entries(entries, 3) == [COUNTED, COUNTED, SEEN, COUNTED, SEEN]
    (counts,) = store.counts([("entity:QNTV", 0, 300)])
    assert (counts.total, counts.negative, counts.neutral) == (3, 2, 1)


def test_windows_close_together_each_with_its_own_status(store) -> None:
    store.add_entries([entry("a", key="topic:legal"), entry("b", key="entity:QNTV")], 3)
    store.close_window(*_close("topic:legal", expected=0))
    refs = [("entity:QNTV", 0, 300), ("topic:legal", 0, 300)]
    counts, baselines = store.counts_and_baselines(refs)
    assert [c.total for c in counts] == [1, 0]  # a closed window's counts are dropped
    assert set(baselines) == {"topic:legal"}
    closes = [_close("entity:QNTV", expected=0), _close("topic:legal", expected=0)]
    assert store.close_windows(closes) == [1, 0]  # the second one was already closed
    assert store.close_windows([]) == []
    assert store.baselines(["entity:QNTV"])["entity:QNTV"].windows == 1


def _close(key: str, *, expected: int) -> tuple[WindowCounts, int, Baseline]:
    counts = WindowCounts(key, 0, 300, total=1, negative=1)
    return counts, expected, Baseline(0.5, 1.0, expected + 1)


def test_an_outbox_alert_is_leased_to_one_publisher_at_a_time(store) -> None:
    store.claim_alert(alert(), cooldown_s=0)
    assert [a["alert_id"] for a in store.lease_pending_alerts("a")] == [alert()["alert_id"]]
    assert store.lease_pending_alerts("b") == []  # "a" is sending it
    assert len(store.lease_pending_alerts("a")) == 1  # its holder may try again
    assert len(store.lease_pending_alerts("b", lease_s=0)) == 0
    store.ack_alerts(store.pending_alerts())
    assert store.lease_pending_alerts("a") == [] and store.lease_pending_alerts("b") == []


def test_a_dead_publishers_lease_runs_out(store) -> None:
    store.claim_alert(alert(), cooldown_s=0)
    store.lease_pending_alerts("dead", lease_s=0)  # expires at once
    time.sleep(1.1)  # Redis TIME has whole seconds
    assert len(store.lease_pending_alerts("next")) == 1


def test_a_failed_publisher_releases_only_its_own_leases(store) -> None:
    store.claim_alert(alert(), cooldown_s=0)
    taken = store.lease_pending_alerts("a")
    store.release_alerts(taken, "b")  # not b's lease: nothing changes
    assert store.lease_pending_alerts("b") == []
    store.release_alerts(taken, "a")
    assert len(store.lease_pending_alerts("b")) == 1


def test_the_first_sending_note_is_kept_until_the_alert_is_acknowledged(store) -> None:
    store.claim_alert(alert(), cooldown_s=0)
    taken = store.lease_pending_alerts("a")
    assert store.sending_marks(taken) == {}
    store.mark_sending(taken, {0: 4, 1: 9})
    store.mark_sending(taken, {0: 5, 1: 12})  # a resend keeps the note of the first send
    assert store.sending_marks(taken) == {alert()["alert_id"]: {0: 4, 1: 9}}
    store.ack_alerts(taken)
    assert store.sending_marks(taken) == {}


def test_a_redelivered_batch_is_not_flagged_late_after_its_windows_closed(store) -> None:
    """A consumer killed (or a commit lost to a rebalance, or a Kafka outage) after a batch
    was applied but before its offsets were committed: the batch is read again. Its messages
    were counted, and the windows they closed are closed now, but they are redeliveries, not
    late news: republished `late: true` and counted as late, they looked unaggregated."""
    import json

    from support.alerts_setup import NeutralScorer

    from threefold.apps.alerts.pipeline import AlertPipeline
    from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor
    from threefold.streaming.messages import Message

    from .conftest import T0

    config = AlertsConfig(window_size_s=300, grace_s=60)
    pipeline = AlertPipeline.from_config(config, store)
    processor = AlertsProcessor(
        config, NeutralScorer(), pipeline, AlertPublisher(store, producer=None, topic="alerts")
    )
    batch = [
        Message(
            "news",
            0,
            i,
            None,
            json.dumps({"id": f"m{i}", "text": "x", "published_at": T0 + i * 40}).encode(),
            0,
        )
        for i in range(16)
    ]  # event time T0 .. T0 + 600: the batch itself closes the window [T0, T0 + 300)
    first = processor.process(batch)
    assert [w["total"] for w in store.history("topic:legal")] == [8]
    again = processor.process(batch)  # read again: nothing was committed
    assert [o.value["late"] for o in again.outputs] == [o.value["late"] for o in first.outputs]
    metric = processor.metrics.registry.get_sample_value
    assert metric("threefold_alerts_messages_late_total") == 0
    assert metric("threefold_alerts_messages_redelivered_total") == 16
    assert [w["total"] for w in store.history("topic:legal")] == [8]
    news = json.dumps({"id": "new", "text": "x", "published_at": T0 - 3600}).encode()
    late = Message("news", 0, 99, None, news, 0)
    assert [o.value["late"] for o in processor.process([late]).outputs] == [True]


@pytest.mark.integration
def test_an_ack_whose_answer_is_lost_leaves_the_alert_in_the_feed(redis_store, monkeypatch):
    """The ack's first Redis command lands but its answer times out (a slow network), and the
    publisher retries the ack: the alert must be in the feed (and the webhook outbox) whenever
    it has left the outbox, including after the retry; a half-done ack would skip both."""
    import redis

    first, other = alert(start=0, end=300), alert(start=900, end=1200)
    for each in (first, other):
        redis_store.claim_alert(each, cooldown_s=0)
    real = redis_store.client.execute_command
    lost: list[str] = []

    def answer_lost_once(*args, **options):
        result = real(*args, **options)  # it lands in Redis ...
        if not lost:
            lost.append(str(args[0]))
            raise redis.TimeoutError("Timeout reading from socket")  # ... the answer does not
        return result

    def feed_ids() -> list[str]:
        return [a["alert_id"] for _, a in redis_store.recent_alerts()]

    monkeypatch.setattr(redis_store.client, "execute_command", answer_lost_once)
    with pytest.raises(redis.TimeoutError):
        redis_store.ack_alerts([first, other], webhook=True)
    monkeypatch.undo()
    assert lost  # the fault struck
    left_outbox = {first["alert_id"], other["alert_id"]} - {
        a["alert_id"] for a in redis_store.pending_alerts()
    }
    assert left_outbox <= set(feed_ids())

    redis_store.ack_alerts([first, other], webhook=True)  # the publisher's retry
    assert redis_store.pending_alerts() == []
    assert sorted(feed_ids()) == sorted([first["alert_id"], other["alert_id"]])  # once each
    assert redis_store.webhook_outbox().pending() == 2


def test_a_heartbeat_replaces_the_consumers_last_and_old_ones_are_dropped() -> None:
    """The dashboard's /healthz reads these: one per consumer, gone ones pruned (in memory by
    `written_at`: one process, one clock; Redis judges by its own clock, tested below)."""
    from threefold.apps.alerts.state.store import HEARTBEAT_TTL_S

    store = InMemoryStateStore()
    now = time.time()
    store.write_heartbeat("gone", {"state": "running", "written_at": now - HEARTBEAT_TTL_S - 1})
    store.write_heartbeat("a", {"state": "starting", "written_at": now - 1})
    store.write_heartbeat("a", {"state": "running", "written_at": now})
    store.write_heartbeat("b", {"state": "dependency_down", "written_at": now})
    assert store.heartbeats() == {
        "a": {"state": "running", "written_at": now},
        "b": {"state": "dependency_down", "written_at": now},
    }


@pytest.mark.integration
def test_consumers_with_skewed_clocks_never_prune_each_others_heartbeats(redis_store) -> None:
    """A host whose clock is over HEARTBEAT_TTL_S behind writes a `written_at` that looks old:
    gone is judged by when Redis last saw each consumer, so both stay listed."""
    from threefold.apps.alerts.state.store import HEARTBEAT_TTL_S

    now = time.time()
    redis_store.write_heartbeat("slow-clock", {"state": "running", "written_at": now - 61})
    redis_store.write_heartbeat("a", {"state": "running", "written_at": now})
    assert sorted(redis_store.heartbeats()) == ["a", "slow-clock"]
    seen = f"{redis_store.prefix}consumers:seen"  # Redis last saw it HEARTBEAT_TTL_S + 1 ago
    redis_store.client.zadd(
        seen, {"slow-clock": redis_store.client.time()[0] - HEARTBEAT_TTL_S - 1}
    )
    redis_store.write_heartbeat("a", {"state": "running", "written_at": now + 1})
    assert sorted(redis_store.heartbeats()) == ["a"]
    assert redis_store.client.zrange(seen, 0, -1) == ["a"]


@pytest.mark.integration
def test_the_heartbeats_key_expires_when_no_consumer_writes(redis_store) -> None:
    from threefold.apps.alerts.state.store import HEARTBEAT_TTL_S

    redis_store.write_heartbeat("a", {"state": "running", "written_at": time.time()})
    assert 0 < redis_store.client.ttl(f"{redis_store.prefix}consumers") <= HEARTBEAT_TTL_S


def test_the_key_list_keeps_the_keys_with_the_latest_windows_up_to_its_bound(store) -> None:
    """Hostile headlines added a key each (4261 from three messages), never removed."""
    store.max_keys = 3
    for n, key in enumerate(["entity:A", "entity:B", "entity:C", "entity:D"]):
        store.add_entries([entry(f"m{n}", key=key, start=300 * n)], 3)
    assert store.aggregation_keys() == ["entity:D", "entity:C", "entity:B"]


def test_a_key_leaves_the_key_list_once_its_history_has_expired(store) -> None:
    store.add_entries([entry("old", key="entity:OLD")], 3)
    later = 8 * 24 * 3600  # past the state TTL (7 days): its history and baseline are gone
    store.advance_watermark({"news:0": later})
    store.add_entries([entry("new", key="entity:NEW", start=later)], 3)
    assert store.aggregation_keys() == ["entity:NEW"]


def test_windows_keep_the_scoring_models_and_baselines_their_model(store) -> None:
    store.add_entries(
        [entry("m1"), replace(entry("m2"), model="s2"), replace(entry("m3"), model="s1")], 3
    )
    (counts,) = store.counts([("entity:QNTV", 0, 300)])
    assert counts.models == ["s1", "s2"]
    new = Baseline(0.5, 3.0, 6, model="s2", model_from=5)
    assert store.close_window(counts, expected_windows=0, new=new) == 1
    assert store.baselines(["entity:QNTV"]) == {"entity:QNTV": new}
    (reopened,) = store.counts([("entity:QNTV", 0, 300)])
    assert reopened.models == []  # dropped with the window's counts


def test_messages_stamped_ahead_of_the_clock_are_counted_for_operators(store) -> None:
    """A feed whose clock or time zone is wrong shows in a metric, not only in a log line."""
    import json
    import time

    from support.alerts_setup import NeutralScorer

    from threefold.apps.alerts.pipeline import AlertPipeline
    from threefold.apps.alerts.processor import AlertPublisher, AlertsProcessor
    from threefold.streaming.messages import Message

    config = AlertsConfig(window_size_s=300, grace_s=60)
    processor = AlertsProcessor(
        config,
        NeutralScorer(),
        AlertPipeline.from_config(config, store),
        AlertPublisher(store, producer=None, topic="alerts"),
    )
    now = time.time()
    stamps = [now - 5, now + 100, now + 110]  # two within max_future_s (120), past grace_s
    batch = [
        Message(
            "news",
            0,
            i,
            None,
            json.dumps({"id": f"m{i}", "text": "x", "published_at": t}).encode(),
            0,
        )
        for i, t in enumerate(stamps)
    ]
    processor.process(batch)
    metric = processor.metrics.registry.get_sample_value
    assert metric("threefold_alerts_messages_ahead_of_clock_total") == 2
    assert metric("threefold_alerts_messages_late_total") == 0
