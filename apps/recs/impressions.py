"""Impressions: every recommendation list served, so that a click has a denominator.

An `Impression` is one list as the user saw it (list id, user, items in order, the model version
that ranked it, the A/B variant that chose that ranker, when). A click or purchase that carries
the list's `list_id` is attributed to that list's model version and variant when the list
showed the item. `ImpressionLog` records impressions
in a store (Redis, or the in-memory twin without Redis) and never fails the request: while
Redis is down impressions wait in an fsync'd spool and are replayed when it answers again;
one Redis refuses on its data while it takes other writes (a key of another type under the
prefix) is set aside in the spool's `.rejected` file, logged and counted
(`recs_spool_records_rejected_total{kind="impression"}`), and the others are stored.
`readout` gives, per model version, lists served, items shown, attributed clicks and purchases,
and the click-through rate (clicks / items shown); `ab_counts` the same counts per (variant,
version) for `threefold recs ab-report`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from threefold.apps.recs.ab_buckets import CONTROL
from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event
from threefold.apps.recs.metrics import RecsMetrics
from threefold.streaming.record_spool import RecordsRefused

logger = logging.getLogger(__name__)
OUTCOMES = ("click", "purchase")  # the events attributed to the list that showed the item
COUNTS = ("lists", "shown", *OUTCOMES)
REFUSED_REASON = "redis answers but refused the impression (see the add_impressions warning)"
AbCounts = dict[str, dict[str, dict[str, int]]]  # variant -> version -> count name -> count


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
    variant: str = CONTROL

    def to_dict(self) -> dict[str, Any]:
        return {
            "list_id": self.list_id,
            "user_id": self.user_id,
            "model_version": self.model_version,
            "variant": self.variant,
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
            variant=str(data.get("variant", CONTROL)),
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
            variant=str(body.get("variant", CONTROL)),
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


@dataclass(frozen=True)
class Attribution:
    """A click or purchase counted for the list that showed the item."""

    event: str
    variant: str
    model_version: str


def attributions(
    events: Sequence[Event], lists: Mapping[str, Impression]
) -> list[tuple[Event, Attribution]]:
    """The outcome events whose `list_id` names a list in `lists` that showed their item to
    their user, each with its attribution.

    The store then counts each (list, item, outcome) once however often it is sent (a second
    click, a spool replayed twice, the same click twice in `events`), so CTR cannot pass 1.
    """
    found = []
    for event in events:
        shown = lists.get(event.list_id or "")
        if (
            event.event in OUTCOMES
            and shown is not None
            and event.item_id in shown.items
            and event.user_id == shown.user_id
        ):
            found.append((event, Attribution(event.event, shown.variant, shown.model_version)))
    return found


def outcome_key(event: Event) -> str:
    """How an outcome is remembered on its list: e.g. `click:bk-002`."""
    return f"{event.event}:{event.item_id}"


class ImpressionStore(Protocol):
    """Where impressions and their counts live; False/None means "unavailable now"."""

    def add(self, impressions: Sequence[Impression]) -> bool: ...

    def attribute(self, events: Sequence[Event]) -> list[Attribution] | None: ...

    def counts(self) -> dict[str, dict[str, int]] | None: ...

    def ab_counts(self) -> AbCounts | None: ...


def _add_counts(row: dict[str, int], impression: Impression) -> None:
    row["lists"] = row.get("lists", 0) + 1
    row["shown"] = row.get("shown", 0) + len(impression.items)


class MemoryImpressionStore:
    """The in-memory twin (no Redis): this worker's last `limit` impressions and its counts."""

    def __init__(self, limit: int = 10_000) -> None:
        self.log: deque[Impression] = deque(maxlen=limit)
        self._lists: OrderedDict[str, Impression] = OrderedDict()
        self._outcomes: dict[str, set[str]] = {}  # per list: the outcomes counted (outcome_key)
        self._limit = limit
        self._counts: dict[str, dict[str, int]] = {}
        self._ab: AbCounts = {}
        self._lock = threading.Lock()

    def add(self, impressions: Sequence[Impression]) -> bool:
        with self._lock:
            for impression in impressions:
                self.log.append(impression)
                self._lists[impression.list_id] = impression
                while len(self._lists) > self._limit:
                    gone, _ = self._lists.popitem(last=False)
                    self._outcomes.pop(gone, None)
                _add_counts(self._counts.setdefault(impression.model_version, {}), impression)
                _add_counts(self._ab_row(impression.variant, impression.model_version), impression)
        return True

    def _ab_row(self, variant: str, version: str) -> dict[str, int]:
        return self._ab.setdefault(variant, {}).setdefault(version, {})

    def attribute(self, events: Sequence[Event]) -> list[Attribution] | None:
        with self._lock:
            found = []
            for event, hit in attributions(events, self._lists):
                counted = self._outcomes.setdefault(event.list_id or "", set())
                key = outcome_key(event)
                if key in counted:
                    continue
                counted.add(key)
                found.append(hit)
                for row in (
                    self._counts.setdefault(hit.model_version, {}),
                    self._ab_row(hit.variant, hit.model_version),
                ):
                    row[hit.event] = row.get(hit.event, 0) + 1
        return found

    def counts(self) -> dict[str, dict[str, int]] | None:
        with self._lock:
            return {version: dict(row) for version, row in self._counts.items()}

    def ab_counts(self) -> AbCounts | None:
        with self._lock:
            return {
                variant: {version: dict(row) for version, row in versions.items()}
                for variant, versions in self._ab.items()
            }


class ImpressionLog:
    """Records impressions without ever failing the request; attributes clicks; reads out CTR."""

    def __init__(
        self,
        store: ImpressionStore,
        metrics: RecsMetrics,
        spool: EventSpool | None = None,
        *,
        takes_writes: Callable[[], bool] = lambda: False,
    ) -> None:
        """`takes_writes()`: whether the store takes writes now (`RedisState.takes_writes`),
        asked after a spooled batch failed: True means it refused them on their data."""
        self.store = store
        self.metrics = metrics
        self.spool = spool
        self.takes_writes = takes_writes

    def record(self, impression: Impression) -> None:
        """Store one impression; when the store is down spool it; when that fails log + count."""
        self.metrics.impressions.labels(impression.model_version).inc()
        self.metrics.count_ab_impression(
            impression.variant, impression.model_version, len(impression.items)
        )
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
                self.spool.replay(self._push_spooled, on_refused=self._count_refused)
            return not self.spool.pending()
        except OSError as exc:
            logger.error("impression spool %s unreadable: %s", self.spool.path, exc)
            return False

    def _push_spooled(self, impressions: list[Impression]) -> bool:
        """`store.add`; `RecordsRefused` when it failed but the store takes other writes."""
        if self.store.add(impressions):
            return True
        if self.takes_writes():
            raise RecordsRefused(REFUSED_REASON)
        return False

    def _count_refused(self, refused: Sequence[tuple[Impression, str]]) -> None:
        self.metrics.spool_rejected.labels("impression").inc(len(refused))

    def attribute(self, events: Sequence[Event]) -> None:
        """Count clicks/purchases that name a list (`list_id`) against its version and variant.

        Spooled lists are stored first: a click on a list served during an outage (both
        spooled) is replayed before that list otherwise, and would find no list to count for.
        """
        if any(e.list_id and e.event in OUTCOMES for e in events):
            self.replay_spool()
            for hit in self.store.attribute(events) or ():
                self.metrics.count_ab_outcome(hit.variant, hit.model_version, hit.event)

    def readout(self) -> dict[str, dict[str, Any]] | None:
        """Per-version counts and CTR; None when the store is unavailable."""
        self.replay_spool()
        counts = self.store.counts()
        return None if counts is None else readout(counts)

    def ab_counts(self) -> AbCounts | None:
        """Counts per (variant, version); None when the store is unavailable."""
        self.replay_spool()
        return self.store.ab_counts()
