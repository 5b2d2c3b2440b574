"""The evaluation gate: not-worse promotes, worse is kept aside with the reason."""

from __future__ import annotations

from pathlib import Path

from threefold.core.gate import judge, publish_gated
from threefold.core.registry import ModelEntry


def test_judge_promotes_a_candidate_that_is_not_worse() -> None:
    assert judge("accuracy", 0.80, 0.80).promoted
    assert judge("accuracy", 0.79, 0.80, margin=0.02).promoted
    worse = judge("accuracy", 0.70, 0.80, margin=0.05)
    assert not worse.promoted
    assert worse.reason == (
        "candidate accuracy 0.7000 < current 0.8000 - margin 0.0500: "
        "rejected, the live version stays"
    )
    assert not judge("accuracy", 0.80, 0.80, margin=-0.01).promoted  # demands a gain
    first = judge("ndcg@10", 0.1, None)
    assert first.promoted and "no live version" in first.reason


def test_judge_when_lower_is_better() -> None:
    assert judge("loss", 0.5, 0.6, higher_is_better=False).promoted
    assert not judge("loss", 0.7, 0.6, higher_is_better=False).promoted


def test_publish_gated_records_both_outcomes(tmp_path: Path) -> None:
    entry = ModelEntry(tmp_path / "clf")
    write = lambda folder, version: (folder / "w").write_text(version)  # noqa: E731
    live = publish_gated(entry, write, judge("f1", 0.6, None))
    rejected = publish_gated(entry, write, judge("f1", 0.5, 0.6), metadata={"created_by": "t"})
    assert entry.current_version() == live == "v1"
    info = entry.info(rejected)
    assert info["status"] == "rejected" and info["created_by"] == "t"
    assert info["gate"]["current"] == 0.6 and info["metrics"] == {"f1": 0.5}
    promoted = publish_gated(entry, write, judge("f1", 0.7, 0.6))
    assert entry.current_version() == promoted == "v3"
    assert entry.info("v3")["parent"] == "v1"


def test_retrain_report_is_one_shape_for_every_app(tmp_path: Path) -> None:
    from threefold.core.gate import retrain_report

    entry = ModelEntry(tmp_path / "clf")
    write = lambda folder, version: (folder / "w").write_text(version)  # noqa: E731
    live = publish_gated(entry, write, judge("f1", 0.6, None))
    decision = judge("f1", 0.5, 0.6)
    rejected = publish_gated(entry, write, decision)
    report = retrain_report("alerts", entry, rejected, live, decision, task="sentiment")
    assert report == {
        "app": "alerts",
        "model": "clf",
        "candidate_version": "v2",
        "current_version": "v1",
        "gate": decision.to_dict(),
        "promoted": False,
        "live_version": "v1",
        "task": "sentiment",
    }
