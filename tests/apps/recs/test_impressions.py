"""Impressions: the in-memory store, click attribution, the CTR readout and the spool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event
from threefold.apps.recs.impressions import (
    Impression,
    ImpressionLog,
    MemoryImpressionStore,
    readout,
)
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_impressions import RedisImpressionStore
from threefold.apps.recs.redis_state import RedisState
from threefold.streaming.connections import RedisSettings

SHOWN = Impression("list-1", "u1", "v2", ("a", "b", "c"), offset=0, timestamp=1.0)


class DownStore(MemoryImpressionStore):
    """A store that is unavailable until `up` is set (Redis down, then back)."""

    up = False

    def add(self, impressions):  # type: ignore[no-untyped-def]
        return self.up and super().add(impressions)


def test_an_impression_keeps_positions_and_round_trips() -> None:
    data = Impression("l", "u", "v1", ("x", "y"), offset=10, timestamp=5.0).to_dict()
    assert data["items"] == [{"item_id": "x", "position": 11}, {"item_id": "y", "position": 12}]
    assert Impression.from_dict(data) == Impression("l", "u", "v1", ("x", "y"), 10, 5.0)


def test_clicks_count_for_the_version_of_the_list_that_showed_the_item() -> None:
    store = MemoryImpressionStore()
    store.add([SHOWN, Impression("list-2", "u2", "v1", ("a", "d"))])
    store.attribute(
        [
            Event("u1", "b", "click", 2.0, list_id="list-1"),
            Event("u1", "b", "purchase", 3.0, list_id="list-1"),
            Event("u1", "z", "click", 4.0, list_id="list-1"),  # not in that list
            Event("u1", "a", "click", 5.0, list_id="unknown"),  # no such list
            Event("u1", "a", "view", 6.0, list_id="list-2"),  # a view is no outcome
            Event("u2", "d", "click", 7.0),  # no list named
        ]
    )
    assert readout(store.counts()) == {
        "v1": {"lists": 1, "shown": 2, "click": 0, "purchase": 0, "ctr": 0.0, "purchase_rate": 0.0},
        "v2": {
            "lists": 1, "shown": 3, "click": 1, "purchase": 1, "ctr": 0.3333,
            "purchase_rate": 0.3333,
        },
    }  # fmt: skip


def test_impressions_wait_in_the_spool_while_the_store_is_down(tmp_path: Path) -> None:
    metrics = RecsMetrics(CollectorRegistry())
    store = DownStore()
    spool = EventSpool(tmp_path, file_name="impressions.jsonl", record_type=Impression)
    log = ImpressionLog(store, metrics, spool)
    log.record(SHOWN)
    assert spool.pending() and store.counts() == {}
    store.up = True
    second = Impression("list-2", "u1", "v2", ("d",), timestamp=2.0)
    log.record(second)  # replays the spool first, so order is kept
    assert not spool.pending()
    assert [i.list_id for i in store.log] == ["list-1", "list-2"]
    assert log.readout()["v2"]["shown"] == 4


def test_an_impression_neither_stored_nor_spooled_is_counted_lost(tmp_path: Path) -> None:
    metrics = RecsMetrics(CollectorRegistry())
    blocked = tmp_path / "file"
    blocked.write_text("")  # the spool directory cannot be created under a file
    spool = EventSpool(blocked, file_name="impressions.jsonl", record_type=Impression)
    ImpressionLog(DownStore(), metrics, spool).record(SHOWN)  # never raises
    assert metrics.impressions_lost._value.get() == 1


@pytest.fixture(params=["memory", "redis"])
def impression_store(request: pytest.FixtureRequest) -> Iterator[object]:
    """The in-process store, and the Redis one on a real redis-server."""
    if request.param == "memory":
        yield MemoryImpressionStore()
        return
    settings = RedisSettings(url=request.getfixturevalue("redis_url"))
    prefix = request.getfixturevalue("redis_prefix")
    yield RedisImpressionStore(
        RedisState(settings, prefix=prefix, metrics=RecsMetrics(CollectorRegistry()))
    )


def test_an_outcome_counts_once_and_only_for_the_user_the_list_was_shown_to(
    impression_store: MemoryImpressionStore,
) -> None:
    impression_store.add([SHOWN])
    first = [
        Event("u1", "b", "click", 2.0, list_id="list-1"),
        Event("u1", "b", "click", 2.5, list_id="list-1"),  # a double click
        Event("u2", "c", "click", 3.0, list_id="list-1"),  # someone else's list
    ]
    assert len(impression_store.attribute(first) or []) == 1
    again = [  # the same click sent again (a spool replayed twice), then a purchase of it
        Event("u1", "b", "click", 4.0, list_id="list-1"),
        Event("u1", "b", "purchase", 5.0, list_id="list-1"),
    ]
    assert [hit.event for hit in impression_store.attribute(again) or []] == ["purchase"]
    row = readout(impression_store.counts() or {})["v2"]
    assert (row["click"], row["purchase"], row["ctr"]) == (1, 1, 0.3333)
