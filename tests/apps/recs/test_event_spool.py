"""The on-disk spool of events Redis could not take."""

from __future__ import annotations

from pathlib import Path

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event

EVENTS = [Event("u1", f"i{n}", "purchase", 1_700_000_000.0 + n) for n in range(3)]


def test_spooled_events_survive_a_new_process_and_replay_in_order(tmp_path: Path) -> None:
    EventSpool(tmp_path).append(EVENTS[:2])
    EventSpool(tmp_path).append(EVENTS[2:])
    spool = EventSpool(tmp_path)  # e.g. a restarted worker
    assert spool.pending()
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 3
    assert pushed == [EVENTS]
    assert not spool.pending()


def test_a_failed_replay_keeps_every_event(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append(EVENTS)
    assert spool.replay(lambda events: False) == 0
    assert spool.pending()
    assert spool.replay(lambda events: True) == 3
