"""Score news items: topic and sentiment classifiers (batched) plus entity extraction.

Either two classifier directories (topic, sentiment) or one multi-task directory
(`threefold alerts train --multitask`): one body, both heads, one forward pass per headline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from threefold.apps.alerts.entities import EntityMatcher
from threefold.apps.alerts.messages import NewsItem, format_time
from threefold.apps.alerts.windows import SENTIMENTS
from threefold.core.errors import ModelError


class Classifier(Protocol):
    """What scoring needs from a classifier (threefold.core.classifier.TextClassifier)."""

    labels: list[str]
    version: str

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


class JointClassifier(Protocol):
    """What scoring needs from a multi-task model (threefold.core.multitask)."""

    tasks: dict[str, list[str]]
    version: str

    def predict_proba(
        self, texts: Sequence[str], *, batch_size: int = 64
    ) -> dict[str, np.ndarray]: ...


class TaskView:
    """One task of a multi-task model, shaped like a `Classifier`."""

    def __init__(self, joint: JointClassifier, task: str) -> None:
        self.joint = joint
        self.task = task
        self.labels = list(joint.tasks[task])
        self.version = joint.version

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.joint.predict_proba(texts, batch_size=batch_size)[self.task]


@dataclass
class ScoredItem:
    """A news item with its topic, sentiment, probabilities and entities."""

    item: NewsItem
    topic: str
    sentiment: str
    topic_probabilities: dict[str, float]
    sentiment_probabilities: dict[str, float]
    entities: list[str]
    models: dict[str, str]
    late: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The record published to the scored topic: the input plus everything scoring added."""
        out = self.item.to_dict()
        out.update(
            topic=self.topic,
            sentiment=self.sentiment,
            probabilities={
                "topic": self.topic_probabilities,
                "sentiment": self.sentiment_probabilities,
            },
            entities=self.entities,
            models=self.models,
            event_time=format_time(self.item.event_time),
            late=self.late,
        )
        return out


class Scorer:
    """Runs both classifiers (or one multi-task model) over a batch at once; extracts tickers."""

    def __init__(
        self,
        topic_model: Classifier,
        sentiment_model: Classifier,
        matcher: EntityMatcher | None = None,
        *,
        batch_size: int = 64,
        joint: JointClassifier | None = None,
    ) -> None:
        check_sentiment_labels(sentiment_model.labels)
        self.topic_model = topic_model
        self.sentiment_model = sentiment_model
        self.matcher = matcher or EntityMatcher()
        self.batch_size = batch_size
        self.joint = joint

    @classmethod
    def from_joint(
        cls, joint: JointClassifier, matcher: EntityMatcher | None = None, *, batch_size: int = 64
    ) -> Scorer:
        """A scorer over a multi-task model with `topic` and `sentiment` tasks."""
        missing = sorted({"topic", "sentiment"} - set(joint.tasks))
        if missing:
            raise ModelError(
                f"the multi-task model has tasks {sorted(joint.tasks)}; scoring needs "
                f"{missing} too. Fix: train it with `threefold alerts train --multitask` on a "
                "CSV with text,topic,sentiment columns"
            )
        return cls(
            TaskView(joint, "topic"),
            TaskView(joint, "sentiment"),
            matcher,
            batch_size=batch_size,
            joint=joint,
        )

    @classmethod
    def load(
        cls,
        topic_dir: str | Path,
        sentiment_dir: str | Path | None = None,
        companies_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        quantize: bool | None = None,
    ) -> Scorer:
        """Load the models and the company list.

        `topic_dir` alone (or the same directory twice) naming a multi-task directory loads it
        as one model scored in one pass; otherwise both TextClassifier directories are needed.
        `quantize=None`: each model follows its recorded int8 decision on the CPU.
        """
        from threefold.core.classifier import TextClassifier
        from threefold.core.multitask import MultiTaskClassifier, is_multitask_dir

        matcher = EntityMatcher.from_csv(companies_path) if companies_path else None
        one_dir = not sentiment_dir or Path(sentiment_dir) == Path(topic_dir or "")
        if topic_dir and one_dir and is_multitask_dir(topic_dir):
            joint = MultiTaskClassifier.load(topic_dir, quantize=quantize, device=device)
            return cls.from_joint(joint, matcher, batch_size=batch_size)
        for what, path in (("topic", topic_dir), ("sentiment", sentiment_dir)):
            if not path:
                raise ModelError(
                    f"no {what} model directory given. Fix: train one with `threefold alerts "
                    f"train` and pass --{what}-model DIR (or THREEFOLD_ALERTS_{what.upper()}"
                    "_MODEL_DIR)"
                )
        topic = TextClassifier.load(topic_dir, quantize=quantize, device=device)
        sentiment = TextClassifier.load(sentiment_dir, quantize=quantize, device=device)
        return cls(topic, sentiment, matcher, batch_size=batch_size)

    @property
    def versions(self) -> dict[str, str]:
        return {"topic": self.topic_model.version, "sentiment": self.sentiment_model.version}

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        """Score a batch; the models see all texts at once."""
        if not items:
            return []
        texts = [item.text for item in items]
        if self.joint is not None:
            both = self.joint.predict_proba(texts, batch_size=self.batch_size)
            topics, sentiments = both["topic"], both["sentiment"]
        else:
            topics = self.topic_model.predict_proba(texts, batch_size=self.batch_size)
            sentiments = self.sentiment_model.predict_proba(texts, batch_size=self.batch_size)
        versions = self.versions
        out = []
        for index, item in enumerate(items):
            topic_row, sentiment_row = topics[index], sentiments[index]
            out.append(
                ScoredItem(
                    item=item,
                    topic=self.topic_model.labels[int(topic_row.argmax())],
                    sentiment=self.sentiment_model.labels[int(sentiment_row.argmax())],
                    topic_probabilities=_rounded(self.topic_model.labels, topic_row),
                    sentiment_probabilities=_rounded(self.sentiment_model.labels, sentiment_row),
                    entities=self.matcher.extract(item.text, item.entities),
                    models=dict(versions),
                )
            )
        return out


def check_sentiment_labels(labels: Sequence[str]) -> None:
    """ModelError unless the labels include 'negative' and come from SENTIMENTS."""
    unknown = sorted(set(labels) - set(SENTIMENTS))
    if unknown or "negative" not in labels:
        raise ModelError(
            f"the sentiment model's labels are {sorted(labels)}; expected "
            f"'negative' and only labels from {list(SENTIMENTS)}. Fix: train it on a CSV "
            "whose label column holds negative/neutral/positive"
        )


class BatchScorer(Protocol):
    """What the processor needs: a `Scorer`, or a `model_source.LiveScorer` that swaps models."""

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]: ...


def _rounded(labels: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {label: round(float(p), 4) for label, p in zip(labels, row, strict=True)}
