"""The on-disk spool of events Redis could not take."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

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


def test_a_torn_line_is_set_aside_and_the_rest_replays(tmp_path: Path) -> None:
    """A worker killed mid-write (or a disk that filled up) leaves half a line: it must not
    block every later replay, nor fail the requests that trigger one."""
    spool = EventSpool(tmp_path)
    spool.append(EVENTS[:2])
    with spool.path.open("a", encoding="utf-8") as handle:
        handle.write('{"user_id": "u1", "item_id": "i9", "ev')  # no end: the crash
    spool.append(EVENTS[2:])
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 3
    assert pushed == [EVENTS]
    assert not spool.pending()
    rejected = spool.path.with_name(spool.path.name + ".rejected")
    assert '"item_id": "i9"' in rejected.read_text(encoding="utf-8")


def test_a_write_the_disk_refuses_leaves_no_partial_line(tmp_path: Path, monkeypatch) -> None:
    spool = EventSpool(tmp_path)
    spool.append(EVENTS[:1])
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", full)
        return real_write(fd, data[: len(data) // 2])

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        spool.append(EVENTS[1:])
    monkeypatch.setattr(os, "write", real_write)
    pushed: list[list[Event]] = []
    assert spool.replay(lambda events: pushed.append(events) or True) == 1
    assert pushed == [EVENTS[:1]]
