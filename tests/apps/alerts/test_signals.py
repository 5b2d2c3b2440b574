"""Corrections and verdicts: validation, provenance, latest-wins, and the stores' contract."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.config import TOPICS
from threefold.apps.alerts.signals import (
    InvalidSignal,
    corrected_labels,
    make_correction,
    make_verdict,
)
from threefold.apps.alerts.state.signal_store import MAX_SCORED, InMemorySignalStore

SCORED = {
    "id": "m1",
    "text": "Apex Robotics recalls robots",
    "topic": "product",
    "sentiment": "neutral",
    "models": {"topic": "v1", "sentiment": "v3"},
}


def correction(label: str = "negative", task: str = "sentiment", at: float = 1.0, **extra):
    record = make_correction(
        {**SCORED, **extra}, task, label, analyst="ana", topic_labels=TOPICS, now=at
    )
    return record


def test_a_correction_records_what_the_analyst_saw() -> None:
    record = correction()
    assert record == {
        "message_id": "m1",
        "text": "Apex Robotics recalls robots",
        "task": "sentiment",
        "label": "negative",
        "predicted": "neutral",
        "model_version": "v3",
        "analyst": "ana",
        "at": "1970-01-01T00:00:01.000Z",
    }


@pytest.mark.parametrize(
    ("task", "label", "message"),
    [
        (
            "sentiment",
            "angry",
            r"sentiment label must be one of \['negative', 'neutral', 'positive'\]",
        ),
        ("topic", "sports", r"topic label must be one of \['earnings', 'legal'"),
        ("mood", "negative", r"task must be one of \['sentiment', 'topic'\], found 'mood'"),
    ],
)
def test_bad_corrections_say_what_is_allowed(task: str, label: str, message: str) -> None:
    with pytest.raises(InvalidSignal, match=message):
        correction(label, task)


def test_verdicts_are_false_or_true_alarms() -> None:
    alert = {"alert_id": "a1", "key": "entity:APXR", "summary": "surge"}
    record = make_verdict(alert, "false_alarm", analyst="ana", note="rumour", now=0.0)
    assert record["verdict"] == "false_alarm" and record["key"] == "entity:APXR"
    with pytest.raises(
        InvalidSignal, match=r"verdict must be one of \['false_alarm', 'true_alarm'\]"
    ):
        make_verdict(alert, "maybe", analyst="ana", note="", now=0.0)
    with pytest.raises(InvalidSignal, match="note is 501 characters; the limit is 500"):
        make_verdict(alert, "true_alarm", analyst="ana", note="x" * 501, now=0.0)


def test_the_latest_correction_of_a_headline_wins() -> None:
    records = [correction("positive", at=2.0), correction("negative", at=1.0)]
    records.append(correction("legal", task="topic", at=3.0))
    assert corrected_labels(records, "sentiment") == {SCORED["text"]: "positive"}
    assert corrected_labels(records, "topic") == {SCORED["text"]: "legal"}


def check_signal_store_contract(store) -> None:
    """What every SignalStore does (in memory and in Redis)."""
    store.record_scored([{**SCORED, "id": f"m{i}"} for i in range(MAX_SCORED + 5)])
    assert [r["id"] for r in store.recent_scored(2)] == [f"m{MAX_SCORED + 4}", f"m{MAX_SCORED + 3}"]
    assert store.scored_message("m10")["text"] == SCORED["text"]
    assert store.scored_message("m0") is None  # beyond the cap
    store.save_correction(correction("positive", at=1.0))
    store.save_correction(correction("negative", at=2.0))  # same headline and task: replaces
    store.save_correction(correction("legal", task="topic", at=3.0))
    assert [(c["task"], c["label"]) for c in store.corrections()] == [
        ("sentiment", "negative"),
        ("topic", "legal"),
    ]
    alert = {"alert_id": "a1"}
    store.save_verdict(make_verdict(alert, "true_alarm", analyst="ana", note="", now=1.0))
    store.save_verdict(make_verdict(alert, "false_alarm", analyst="bo", note="", now=2.0))
    assert [(v["verdict"], v["analyst"]) for v in store.verdicts()] == [("false_alarm", "bo")]
    store.append_audit({"action": "a"})
    store.append_audit({"action": "b"})
    assert [r["action"] for r in store.audit_trail(5)] == ["b", "a"]


def test_in_memory_signal_store_keeps_the_contract() -> None:
    check_signal_store_contract(InMemorySignalStore())


@pytest.mark.integration
def test_redis_signal_store_keeps_the_contract(redis_settings, redis_prefix) -> None:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_signal_store

    check_signal_store_contract(
        open_signal_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)
    )
