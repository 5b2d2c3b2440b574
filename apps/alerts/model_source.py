"""Where the consumer's models come from: plain folders (served as they are) or registry
entries (their current version, swapped between batches when the pointer moves).

`THREEFOLD_ALERTS_TOPIC_MODEL_DIR` / `..._SENTIMENT_MODEL_DIR` each name a saved classifier
folder or a `core.registry.ModelEntry`; the topic one alone may name a multi-task model (folder
or entry) scored in one pass, and the registry's alerts-multitask entry, once it has a current
version, is served in place of alerts-topic + alerts-sentiment. A model served from an entry
names its registry version in the scored messages' `models`; a plain folder keeps the weights
fingerprint as its version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.alerts.entities import EntityMatcher
from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.scoring import ScoredItem, Scorer, check_sentiment_labels
from threefold.core.errors import ModelError
from threefold.core.hot_swap import LiveModel
from threefold.core.registry import ModelEntry

logger = logging.getLogger(__name__)

# Registry entry names `threefold alerts train --registry ROOT` publishes to.
ENTRY_NAMES = {
    "topic": "alerts-topic",
    "sentiment": "alerts-sentiment",
    "joint": "alerts-multitask",
}


class Versioned:
    """A classifier or multi-task model served under its registry version."""

    def __init__(self, model: Any, version: str) -> None:
        self.model = model
        self.version = version
        if hasattr(model, "labels"):
            self.labels = list(model.labels)
        if hasattr(model, "tasks"):
            self.tasks = dict(model.tasks)

    def predict_proba(
        self, texts: Sequence[str], *, batch_size: int = 64
    ) -> np.ndarray | dict[str, np.ndarray]:
        return self.model.predict_proba(texts, batch_size=batch_size)


class FixedModel:
    """A model loaded once from a plain folder; never swapped (same interface as LiveModel)."""

    def __init__(self, model: Any) -> None:
        self._loaded = (str(model.version), model)

    def get(self) -> tuple[str, Any]:
        return self._loaded

    def maybe_refresh(self) -> bool:
        return False


Slot = LiveModel[Any] | FixedModel


class LiveScorer:
    """Scores with the models' current versions: checks the entries before each batch and
    rebuilds its `Scorer` when one of them swapped (in-flight batches keep the old one)."""

    def __init__(
        self,
        slots: dict[str, Slot],
        matcher: EntityMatcher | None = None,
        *,
        batch_size: int = 64,
        on_swap: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        if set(slots) not in ({"topic", "sentiment"}, {"joint"}):
            raise ModelError(f"expected topic and sentiment slots or one joint slot, found {slots}")
        self.slots = slots
        self.matcher = matcher
        self.batch_size = batch_size
        self.on_swap = on_swap
        self._lock = threading.Lock()
        self._scorer: tuple[tuple[str, ...], Scorer] | None = None

    @property
    def versions(self) -> dict[str, str]:
        return self.current().versions

    def refresh(self) -> bool:
        """Re-read the entries' pointers (at most every `check_every_s`); True when one moved."""
        return any([slot.maybe_refresh() for slot in self.slots.values()])

    def current(self) -> Scorer:
        """The Scorer over the versions loaded now (rebuilt only when one changed)."""
        loaded = {name: slot.get() for name, slot in self.slots.items()}
        key = tuple(f"{name}={version}" for name, (version, _) in sorted(loaded.items()))
        with self._lock:
            if self._scorer is not None and self._scorer[0] == key:
                return self._scorer[1]
            if "joint" in loaded:
                scorer = Scorer.from_joint(
                    loaded["joint"][1], self.matcher, batch_size=self.batch_size
                )
            else:
                scorer = Scorer(
                    loaded["topic"][1],
                    loaded["sentiment"][1],
                    self.matcher,
                    batch_size=self.batch_size,
                )
            swapped = self._scorer is not None
            self._scorer = (key, scorer)
        if swapped:
            logger.info(
                "scoring with models %s",
                scorer.versions,
                extra={"fields": {"event": "model_swap", "models": scorer.versions}},
            )
            if self.on_swap is not None:
                self.on_swap(scorer.versions)
        return scorer

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        """Score a batch with the current versions (checked first)."""
        self.refresh()
        return self.current().score(items)


def open_scorer(
    topic_dir: str | Path,
    sentiment_dir: str | Path | None,
    companies_path: str | Path | None = None,
    *,
    batch_size: int = 64,
    check_every_s: float = 2.0,
    on_swap: Callable[[dict[str, str]], None] | None = None,
) -> Scorer | LiveScorer:
    """A Scorer over plain folders, or a LiveScorer when any directory is a registry entry.

    Entries ROOT/alerts-topic and ROOT/alerts-sentiment give way to ROOT/alerts-multitask when
    that entry has a current version (`served_dirs`).
    """
    topic_dir, sentiment_dir = served_dirs(topic_dir, sentiment_dir)
    dirs = [d for d in (topic_dir, sentiment_dir) if d]
    if not any(ModelEntry.is_entry(d) for d in dirs):
        return Scorer.load(topic_dir, sentiment_dir, companies_path, batch_size=batch_size)
    matcher = EntityMatcher.from_csv(companies_path) if companies_path else None
    one_dir = not sentiment_dir or Path(sentiment_dir) == Path(topic_dir or "")
    if topic_dir and one_dir and _is_multitask(topic_dir):
        slots: dict[str, Slot] = {"joint": _slot(topic_dir, load_joint, check_every_s)}
    else:
        for what, path in (("topic", topic_dir), ("sentiment", sentiment_dir)):
            if not path:
                raise ModelError(
                    f"no {what} model directory given. Fix: pass --{what}-model DIR (a model "
                    f"folder or a registry entry such as ROOT/{ENTRY_NAMES[what]}) or set "
                    f"THREEFOLD_ALERTS_{what.upper()}_MODEL_DIR"
                )
        slots = {
            "topic": _slot(topic_dir, load_classifier, check_every_s),
            "sentiment": _slot(sentiment_dir, load_sentiment, check_every_s),
        }
    scorer = LiveScorer(slots, matcher, batch_size=batch_size, on_swap=on_swap)
    scorer.current()  # load now: a bad model fails at start, not on the first batch
    return scorer


def served_dirs(
    topic_dir: str | Path, sentiment_dir: str | Path | None
) -> tuple[str | Path, str | Path | None]:
    """The directories to serve: as configured, or (ROOT/alerts-multitask, None) when they are
    the registry's ROOT/alerts-topic and ROOT/alerts-sentiment entries and a multi-task entry
    with a current version sits beside them: the model `alerts train` publishes for data large
    enough to fine-tune, and the one `retrain alerts` retrains. Checked at start-up."""
    topic = Path(topic_dir or "")
    joint = topic.parent / ENTRY_NAMES["joint"]
    beside = sentiment_dir is None or Path(sentiment_dir) == topic.parent / ENTRY_NAMES["sentiment"]
    if not (topic.name == ENTRY_NAMES["topic"] and beside):
        return topic_dir, sentiment_dir
    if not ModelEntry.is_entry(joint) or ModelEntry(joint).current_version() is None:
        return topic_dir, sentiment_dir
    logger.info(
        "serving %s (topic and sentiment in one pass) instead of %s and %s: it has a current "
        "version; move it away to serve the two classifiers",
        joint,
        topic,
        sentiment_dir,
    )
    return joint, None


def load_classifier(folder: Path, version: str | None = None) -> Any:
    """A TextClassifier folder, served under `version` (its registry version) when given."""
    from threefold.core.classifier import TextClassifier

    model = TextClassifier.load(folder)
    return Versioned(model, version) if version else model


def load_sentiment(folder: Path, version: str | None = None) -> Any:
    """`load_classifier`, refusing a model without the sentiment labels (the old one stays)."""
    model = load_classifier(folder, version)
    check_sentiment_labels(model.labels)
    return model


def load_joint(folder: Path, version: str | None = None) -> Any:
    """A multi-task folder (int8 as recorded on the CPU), served under `version` when given."""
    from threefold.core.multitask import MultiTaskClassifier

    model = MultiTaskClassifier.load(folder)
    check_sentiment_labels(model.tasks.get("sentiment", []))
    return Versioned(model, version) if version else model


def _slot(path: str | Path, load: Callable[[Path, str | None], Any], check_every_s: float) -> Slot:
    if ModelEntry.is_entry(path):
        return LiveModel(ModelEntry(path), load, check_every_s=check_every_s)
    return FixedModel(load(Path(path), None))


def _is_multitask(path: str | Path) -> bool:
    from threefold.core.multitask import is_multitask_dir

    folder = ModelEntry(path).current_dir() if ModelEntry.is_entry(path) else Path(path)
    return is_multitask_dir(folder)
