"""Models from plain folders (fixed) or registry entries (current version, swapped between
batches): what the consumer scores with, and what the scored messages name."""

from __future__ import annotations

import logging

import pytest

from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.model_source import LiveScorer, open_scorer, served_dirs
from threefold.apps.alerts.scoring import Scorer
from threefold.core.classifier import TextClassifier
from threefold.core.errors import ModelError
from threefold.core.registry import ModelEntry

ITEMS = [NewsItem(id="1", text="Marlow Foods recalls cereal", event_time=0.0)]


@pytest.fixture
def entries(tmp_path, model_dirs) -> dict[str, ModelEntry]:
    out = {}
    for task in ("topic", "sentiment"):
        out[task] = ModelEntry(tmp_path / f"alerts-{task}")
        out[task].publish_dir(model_dirs[task])
    return out


def test_plain_folders_are_served_as_they_are_with_their_weights_fingerprint(model_dirs) -> None:
    scorer = open_scorer(model_dirs["topic"], model_dirs["sentiment"])
    assert isinstance(scorer, Scorer)
    assert scorer.versions["sentiment"] == TextClassifier.load(model_dirs["sentiment"]).version


def test_entries_are_served_at_their_current_version_and_swapped_between_batches(
    entries, model_dirs
) -> None:
    swaps = []
    scorer = open_scorer(
        entries["topic"].path, entries["sentiment"].path, check_every_s=0, on_swap=swaps.append
    )
    assert isinstance(scorer, LiveScorer)
    assert scorer.score(ITEMS)[0].models == {"topic": "v1", "sentiment": "v1"}

    entries["sentiment"].publish_dir(model_dirs["sentiment"])  # v2 becomes current
    assert scorer.score(ITEMS)[0].models == {"topic": "v1", "sentiment": "v2"}
    entries["sentiment"].rollback()
    assert scorer.score(ITEMS)[0].models == {"topic": "v1", "sentiment": "v1"}
    assert swaps == [{"topic": "v1", "sentiment": "v2"}, {"topic": "v1", "sentiment": "v1"}]


def test_a_broken_new_version_is_logged_and_the_old_one_keeps_scoring(
    entries, model_dirs, caplog
) -> None:
    scorer = open_scorer(entries["topic"].path, entries["sentiment"].path, check_every_s=0)
    entries["sentiment"].publish_dir(model_dirs["topic"])  # topic labels: not a sentiment model
    with caplog.at_level(logging.ERROR):
        assert scorer.score(ITEMS)[0].models["sentiment"] == "v1"
    assert "could not load alerts-sentiment version v2; still serving v1" in caplog.text


def test_an_entry_without_a_current_version_says_how_to_publish_one(tmp_path, model_dirs) -> None:
    empty = ModelEntry(tmp_path / "alerts-sentiment")
    empty.publish_dir(model_dirs["sentiment"], activate=False)
    with pytest.raises(ModelError, match="no current version of 'alerts-sentiment'"):
        open_scorer(model_dirs["topic"], empty.path)


def test_a_multitask_entry_is_scored_in_one_pass_under_its_version(tmp_path, multitask_dir) -> None:
    entry = ModelEntry(tmp_path / "alerts-multitask")
    entry.publish_dir(multitask_dir)
    scorer = open_scorer(entry.path, None, check_every_s=0)
    assert scorer.score(ITEMS)[0].models == {"topic": "v1", "sentiment": "v1"}
    entry.publish_dir(multitask_dir)
    assert scorer.score(ITEMS)[0].models == {"topic": "v2", "sentiment": "v2"}


def test_an_alerts_multitask_entry_is_served_in_place_of_topic_and_sentiment(
    tmp_path, entries, multitask_dir
) -> None:
    topic, sentiment = entries["topic"].path, entries["sentiment"].path
    assert served_dirs(topic, sentiment) == (topic, sentiment)
    joint = ModelEntry(tmp_path / "alerts-multitask")
    joint.publish_dir(multitask_dir, activate=False)  # no current version yet: not served
    assert served_dirs(topic, sentiment) == (topic, sentiment)
    joint.promote("v1")
    assert served_dirs(topic, sentiment) == (joint.path, None)
    scorer = open_scorer(topic, sentiment, check_every_s=0)
    assert set(scorer.slots) == {"joint"}
    assert scorer.score(ITEMS)[0].models == {"topic": "v1", "sentiment": "v1"}
    other = tmp_path / "elsewhere" / "alerts-sentiment"  # not the entry beside alerts-topic
    assert served_dirs(topic, other) == (topic, other)
