"""Scoring with real (tiny) fine-tuned classifiers."""

from __future__ import annotations

import pytest

from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.scoring import Scorer
from threefold.core.errors import ModelError

pytestmark = pytest.mark.slow


def test_scored_item_has_topic_sentiment_probabilities_entities_and_versions(scorer):
    item = NewsItem(
        id="n1",
        text="Helios Airlines grounded after safety audit, $ORSC also lower",
        event_time=1_714_550_400,
        source="wire",
        entities=["XYZ"],
    )
    (scored,) = scorer.score([item])
    record = scored.to_dict()
    assert record["id"] == "n1" and record["source"] == "wire"
    assert record["topic"] in scorer.topic_model.labels
    assert record["sentiment"] in ("negative", "neutral", "positive")
    probabilities = record["probabilities"]
    assert sum(probabilities["sentiment"].values()) == pytest.approx(1.0, abs=1e-3)
    assert max(probabilities["topic"], key=probabilities["topic"].get) == record["topic"]
    assert record["entities"] == ["HLX", "ORSC", "XYZ"]
    assert record["models"] == {
        "topic": scorer.topic_model.version,
        "sentiment": scorer.sentiment_model.version,
    }
    assert record["event_time"] == "2024-05-01T08:00:00Z"


def test_batch_scoring_matches_one_by_one(scorer):
    texts = ["Marlow Foods recalls cereal", "Central bank holds rates", "Apex Robotics beats"]
    items = [NewsItem(id=str(i), text=t, event_time=0.0) for i, t in enumerate(texts)]
    together = scorer.score(items)
    alone = [scorer.score([item])[0] for item in items]
    assert [s.sentiment for s in together] == [s.sentiment for s in alone]
    for a, b in zip(together, alone, strict=True):
        for label, p in a.sentiment_probabilities.items():
            assert p == pytest.approx(b.sentiment_probabilities[label], abs=1e-3)


def test_a_model_without_negative_label_is_refused_as_sentiment_model(scorer):
    with pytest.raises(ModelError, match="expected 'negative'"):
        Scorer(scorer.topic_model, scorer.topic_model)


def test_missing_model_dir_says_how_to_train_one():
    with pytest.raises(ModelError, match="threefold alerts train"):
        Scorer.load("", "")


# ------------------------------------------------------------------ one multi-task directory
def test_one_multitask_directory_scores_each_batch_in_one_forward_pass(multitask_dir):
    scorer = Scorer.load(multitask_dir)
    assert Scorer.load(multitask_dir, multitask_dir).joint is not None
    calls = []
    forward = scorer.joint.model.forward
    scorer.joint.model.forward = lambda **kw: calls.append(1) or forward(**kw)
    texts = ["Marlow Foods recalls cereal", "Central bank holds rates", "Apex Robotics beats"]
    items = [NewsItem(id=str(i), text=t, event_time=0.0) for i, t in enumerate(texts)]
    scored = scorer.score(items)
    assert len(calls) == 1
    for item in scored:
        assert item.topic in scorer.topic_model.labels
        assert item.sentiment in ("negative", "neutral", "positive")
        assert sum(item.topic_probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert item.models == {"topic": scorer.joint.version, "sentiment": scorer.joint.version}


def test_a_multitask_model_without_a_sentiment_task_is_refused(multitask_dir):
    from threefold.core.multitask import MultiTaskClassifier

    joint = MultiTaskClassifier.load(multitask_dir)
    joint.tasks = {"topic": joint.tasks["topic"]}
    with pytest.raises(ModelError, match=r"scoring needs \['sentiment'\] too"):
        Scorer.from_joint(joint)
