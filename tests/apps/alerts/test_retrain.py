"""Retraining data: corrections win over base labels, gate headlines never reach training."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.retrain import LabelledRows, build_training_set, gate_scores


def fix(text: str, label: str, task: str = "sentiment", at: str = "1") -> dict:
    return {"text": text, "label": label, "task": task, "at": at}


BASE = LabelledRows(
    ["Bank beats estimates", "Robots recalled", "Gate headline", "Rates unchanged"],
    {"sentiment": ["positive", "negative", "neutral", "neutral"]},
)


def test_a_correction_wins_over_the_base_label_and_gate_texts_are_removed() -> None:
    corrections = [
        fix("robots  RECALLED", "neutral"),  # matched ignoring case and spacing
        fix("A brand new headline", "negative"),
        fix("gate headline", "positive"),  # a gate headline: never trained on
        fix("Bank beats estimates", "legal", task="topic"),  # another task: ignored
    ]
    data = build_training_set(BASE, corrections, ["Gate Headline"])
    assert data.texts == [
        "Bank beats estimates",
        "Robots recalled",
        "Rates unchanged",
        "A brand new headline",
    ]
    assert data.labels["sentiment"] == ["positive", "neutral", "neutral", "negative"]
    assert data.report() == {"examples": 4, "corrected": 1, "added": 1, "gate_removed": 1}


def test_gate_scores_are_macro_f1_per_task_and_their_mean() -> None:
    gate = LabelledRows(
        ["a", "b", "c", "d"], {"sentiment": ["negative", "negative", "neutral", "positive"]}
    )
    perfect = gate_scores({"sentiment": gate.labels["sentiment"]}, gate)
    assert perfect == {"sentiment_macro_f1": 1.0, "macro_f1": 1.0}
    never_negative = gate_scores({"sentiment": ["neutral", "neutral", "neutral", "positive"]}, gate)
    assert never_negative["macro_f1"] == 0.5  # negative F1 0, neutral 2/3, positive 1


@pytest.mark.slow
def test_a_multitask_entry_is_retrained_on_both_tasks_and_gated(tmp_path, multitask_dir) -> None:
    from threefold.apps.alerts.config import DEFAULT_GATE_DATA, DEFAULT_TRAINING_DATA
    from threefold.apps.alerts.retrain import retrain
    from threefold.core.registry import ModelEntry
    from threefold.core.training_config import TrainingConfig

    entry = ModelEntry(tmp_path / "alerts-multitask")
    entry.publish_dir(multitask_dir)
    result = retrain(
        entry,
        task="sentiment",
        training_data=DEFAULT_TRAINING_DATA,
        gate_data=DEFAULT_GATE_DATA,
        corrections=[
            fix("A brand new headline", "negative"),
            fix("A brand new headline", "legal", "topic"),
        ],
        config=TrainingConfig(max_steps=2, batch_size=8, max_length=24, eval_fraction=0.0),
        margin=1.0,  # this test is about the path, not the quality of two training steps
    )
    assert result["task"] == "topic+sentiment" and result["candidate_version"] == "v2"
    assert set(result["candidate_metrics"]) == {"topic_macro_f1", "sentiment_macro_f1", "macro_f1"}
    assert result["promoted"] is True and entry.current_version() == "v2"
    assert result["training"]["added"] == 1  # labelled for both tasks
    assert entry.info("v2")["gate"]["metric"] == "macro_f1"
