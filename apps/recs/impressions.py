"""Impressions: every recommendation list served, so that a click has a denominator.

An `Impression` is one list as the user saw it (list id, user, items in order, the model version
that ranked it, when). A click or purchase that carries the list's `list_id` is attributed to
that list's model version when the list showed the item. `ImpressionLog` records impressions
in a store (Redis, or the in-memory twin without Redis) and never fails the request: while
Redis is down impressions wait in an fsync'd spool and are replayed when it answers again.
`readout` gives, per model version, lists served, items shown, attributed clicks and purchases,
and the click-through rate (clicks / items shown).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event
from threefold.apps.recs.metrics import RecsMetrics

logger = logging.getLogger(__name__)
OUTCOMES = ("click", "purchase")  # the events attributed to the list that showed the item
COUNTS = ("lists", "shown", *OUTCOMES)


def new_list_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Impression:
    """One recommendation list served: `items[i]` was shown at position `offset + i + 1`."""

    list_id: str
    user_id: str
    model_version: str
    items: tuple[str, ...]
    offset: int = 0
    timestamp: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "list_id": self.list_id,
            "user_id": self.user_id,
            "model_version": self.model_version,
            "items": [
                {"item_id": item_id, "position": self.offset + i + 1}
                for i, item_id in enumerate(self.items)
            ],
            "offset": self.offset,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impression:
        return cls(
            list_id=str(data["list_id"]),
            user_id=str(data["user_id"]),
            model_version=str(data["model_version"]),
            items=tuple(str(entry["item_id"]) for entry in data["items"]),
            offset=int(data.get("offset", 0)),
            timestamp=float(data.get("timestamp", 0.0)),
        )

    @classmethod
    def of(cls, body: Mapping[str, Any], list_id: str) -> Impression:
        """The impression of a recommendation response body (`RecommendationList.to_dict`)."""
        return cls(
            list_id=list_id,
            user_id=str(body["user_id"]),
            model_version=str(body["model_version"]),
            items=tuple(str(item["item_id"]) for item in body["items"]),
            offset=int(body.get("offset", 0)),
            timestamp=time.time(),
        )


def readout(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
    """Per model version: the counts and `ctr` = clicks / items shown (None before any)."""
    result: dict[str, dict[str, Any]] = {}
    for version in sorted(counts):
        row = {name: int(counts[version].get(name, 0)) for name in COUNTS}
        shown = row["shown"]
        row["ctr"] = round(row["click"] / shown, 4) if shown else None
        row["purchase_rate"] = round(row["purchase"] / shown, 4) if shown else None
        result[version] = row
    return result


class ImpressionStore(Protocol):
    """Where impressions and per-version counts live; False/None means "unavailable now"."""

    def add(self, impressions: Sequence[Impression]) -> bool: ...

    def attribute(self, events: Sequence[Event]) -> bool: ...

    def counts(self) -> dict[str, dict[str, int]] | None: ...


class MemoryImpressionStore:
    """The in-memory twin (no Redis): this worker's last `limit` impressions and its counts."""

    def __init__(self, limit: int = 10_000) -> None:
        self.log: deque[Impression] = deque(maxlen=limit)
        self._lists: OrderedDict[str, Impression] = OrderedDict()
        self._limit = limit
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def add(self, impressions: Sequence[Impression]) -> bool:
        with self._lock:
            for impression in impressions:
                self.log.append(impression)
                self._lists[impression.list_id] = impression
                while len(self._lists) > self._limit:
                    self._lists.popitem(last=False)
                row = self._counts.setdefault(impression.model_version, {})
                row["lists"] = row.get("lists", 0) + 1
                row["shown"] = row.get("shown", 0) + len(impression.items)
        return True

    def attribute(self, events: Sequence[Event]) -> bool:
        with self._lock:
            for event in events:
                shown = self._lists.get(event.list_id or "")
                if event.event in OUTCOMES and shown and event.item_id in shown.items:
                    row = self._counts.setdefault(shown.model_version, {})
                    row[event.event] = row.get(event.event, 0) + 1
        return True

    def counts(self) -> dict[str, dict[str, int]] | None:
        with self._lock:
            return {version: dict(row) for version, row in self._counts.items()}


class ImpressionLog:
    """Records impressions without ever failing the request; attributes clicks; reads out CTR."""

    def __init__(
        self, store: ImpressionStore, metrics: RecsMetrics, spool: EventSpool | None = None
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.spool = spool

    def record(self, impression: Impression) -> None:
        """Store one impression; when the store is down spool it; when that fails log + count."""
        self.metrics.impressions.labels(impression.model_version).inc()
        if self.replay_spool() and self.store.add([impression]):
            return
        if self.spool is None:
            self.metrics.impressions_lost.inc()
            return
        try:
            self.spool.append([impression])
        except OSError as exc:  # the list is still served; its impression is counted as lost
            self.metrics.impressions_lost.inc()
            logger.error("impression %s lost: store and spool unavailable (%s)", impression, exc)

    def replay_spool(self) -> bool:
        """Push spooled impressions to the store; True when none is left waiting."""
        if self.spool is None:
            return True
        try:
            if self.spool.pending():
                self.spool.replay(self.store.add)
            return not self.spool.pending()
        except OSError as exc:
            logger.error("impression spool %s unreadable: %s", self.spool.path, exc)
            return False

    def attribute(self, events: Sequence[Event]) -> None:
        """Count clicks/purchases that name a list (`list_id`) against its model version."""
        if any(e.list_id and e.event in OUTCOMES for e in events):
            self.store.attribute(events)

    def readout(self) -> dict[str, dict[str, Any]] | None:
        """Per-version counts and CTR; None when the store is unavailable."""
        self.replay_spool()
        counts = self.store.counts()
        return None if counts is None else readout(counts)
