"""The on-disk spool of records Redis could not take (shared by recs and the FAQ bot).

The recs tests (tests/apps/recs/test_event_spool.py) cover order, a failed replay, a line torn
in the middle and a write the disk refuses; these cover what the FAQ bot added: a torn last
line, the size limit, and two processes replaying the same spool at once.
"""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from threefold.streaming.record_spool import (
    RecordSpool,
    RecordsRefused,
    SpoolFull,
    redis_server,
    spool_file_name,
)


@dataclass(frozen=True)
class Note:
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Note:
        return cls(int(data["n"]))


def spool_in(directory: Path, **options: Any) -> RecordSpool:
    return RecordSpool(directory, file_name="notes.jsonl", record_type=Note, **options)


def test_a_last_line_torn_by_a_crash_is_set_aside_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed mid-write leaves the end of the file half a line: the replay after it
    pushes every whole record, in order, and logs what it set aside instead of failing."""
    spool = spool_in(tmp_path)
    spool.append([Note(1), Note(2)])
    with spool.path.open("a", encoding="utf-8") as handle:
        handle.write('{"n": 3')  # the crash: no closing brace, no newline
    restarted = spool_in(tmp_path)
    assert restarted.count() == 3
    pushed: list[list[Note]] = []
    with caplog.at_level(logging.ERROR, logger="threefold.streaming.record_spool"):
        assert restarted.replay(lambda notes: pushed.append(notes) or True) == 2
    assert pushed == [[Note(1), Note(2)]]
    assert not restarted.pending() and restarted.count() == 0
    assert "1 unreadable line(s) of notes.jsonl" in caplog.text
    rejected = spool.path.with_name("notes.jsonl.rejected")
    assert rejected.read_text(encoding="utf-8") == '{"n": 3\n'


def test_a_full_spool_refuses_new_records_and_keeps_the_old_ones(tmp_path: Path) -> None:
    line_bytes = len(json.dumps(Note(1).to_dict())) + 1
    spool = spool_in(tmp_path, max_bytes=2 * line_bytes)
    spool.append([Note(1), Note(2)])
    with pytest.raises(SpoolFull, match=r"spool full: .* limit of \d+ bytes; nothing was added"):
        spool.append([Note(3)])
    with pytest.raises(OSError) as refused:  # callers that catch a disk error catch this too
        spool.append([Note(3)])
    assert refused.value.errno == errno.ENOSPC
    assert spool.size_bytes() == 2 * line_bytes
    pushed: list[list[Note]] = []
    assert spool.replay(lambda notes: pushed.append(notes) or True) == 2
    assert pushed == [[Note(1), Note(2)]]
    spool.append([Note(3)])  # emptied by the replay: room again
    assert spool.count() == 1


def test_a_size_limit_below_one_byte_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"max_bytes must be >= 1 \(or None: no limit\), found 0"):
        spool_in(tmp_path, max_bytes=0)


REPLAYER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from threefold.streaming.record_spool import RecordSpool

    class Note(dict):
        def to_dict(self):
            return dict(self)

        @classmethod
        def from_dict(cls, data):
            return cls(data)

    spool_dir, out, ready, go = (Path(arg) for arg in sys.argv[1:])
    spool = RecordSpool(spool_dir, file_name="notes.jsonl", record_type=Note)
    ready.touch()
    while not go.exists():
        time.sleep(0.01)

    def push(notes):
        time.sleep(0.5)  # a slow Redis: the other process tries meanwhile
        with out.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(n) + "\\n" for n in notes)
        return True

    print(spool.replay(push))
    """
)


def wait_for(paths: list[Path], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, f"never appeared: {[str(p) for p in paths]}"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_replaying_at_once_push_each_record_once(tmp_path: Path) -> None:
    """E.g. two workers starting at once after a crash: each finds the spool and replays it."""
    spool_dir, out, go = tmp_path / "spool", tmp_path / "pushed.jsonl", tmp_path / "go"
    spool_in(spool_dir).append([Note(n) for n in range(50)])
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    replayers = [
        subprocess.Popen(
            [sys.executable, "-c", REPLAYER, str(spool_dir), str(out), str(flag), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    wait_for(ready)
    go.touch()
    results = [replayer.communicate(timeout=60) for replayer in replayers]
    assert [r.returncode for r in replayers] == [0, 0], [stderr for _, stderr in results]
    assert sorted(int(stdout) for stdout, _ in results) == [0, 50]
    pushed = [json.loads(line)["n"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert pushed == list(range(50))


class RefusesOdd:
    """A store that refuses odd notes on their data and takes the others; `down_after` takes
    that many pushes, then is unreachable (returns False)."""

    def __init__(self, *, down_after: int | None = None) -> None:
        self.taken: list[int] = []
        self.pushes = 0
        self.down_after = down_after

    def push(self, notes: list[Note]) -> bool:
        self.pushes += 1
        if self.down_after is not None and self.pushes > self.down_after:
            return False
        odd = [note.n for note in notes if note.n % 2]
        if odd:
            raise RecordsRefused(f"WRONGTYPE for notes {odd}")
        self.taken += [note.n for note in notes]
        return True


def rejected_records(spool: RecordSpool) -> list[tuple[int, str]]:
    lines = spool.rejected_path.read_text(encoding="utf-8").splitlines()
    return [(entry["record"]["n"], entry["reason"]) for entry in map(json.loads, lines)]


def test_records_the_store_refuses_are_set_aside_with_the_reason_and_the_rest_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = spool_in(tmp_path)
    spool.append([Note(n) for n in (0, 2, 3, 4, 6, 8, 9, 10)])
    store, refused = RefusesOdd(), []
    with caplog.at_level(logging.ERROR, logger="threefold.streaming.record_spool"):
        assert spool.replay(store.push, on_refused=refused.extend) == 6
    assert store.taken == [0, 2, 4, 6, 8, 10]  # in order
    assert rejected_records(spool) == [
        (3, "WRONGTYPE for notes [3]"),
        (9, "WRONGTYPE for notes [9]"),
    ]
    assert refused == [(Note(3), "WRONGTYPE for notes [3]"), (Note(9), "WRONGTYPE for notes [9]")]
    assert not spool.pending()
    assert "redis refused 1 Note record(s) of spool notes.jsonl (WRONGTYPE for notes [3])" in (
        caplog.text
    )
    assert str(spool.rejected_path) in caplog.text
    assert spool.replay(store.push) == 0 and store.taken == [0, 2, 4, 6, 8, 10]


def test_redis_lost_while_finding_a_refused_record_keeps_only_what_it_did_not_take(
    tmp_path: Path,
) -> None:
    """Pushes: all (refused), 0-3 (refused), 0-1 (taken), then Redis is gone: the taken ones
    leave the spool, the others wait for the next replay, none is pushed twice."""
    spool = spool_in(tmp_path)
    spool.append([Note(n) for n in (0, 2, 3, 4, 6, 8, 10, 12)])
    store = RefusesOdd(down_after=3)
    assert spool.replay(store.push) == 2
    assert store.taken == [0, 2]
    assert spool.count() == 6
    store.down_after = None
    assert spool.replay(store.push) == 5
    assert store.taken == [0, 2, 4, 6, 8, 10, 12]
    assert rejected_records(spool) == [(3, "WRONGTYPE for notes [3]")]


def test_a_push_that_raises_after_a_refusal_keeps_the_rest_and_the_refusal_is_set_aside(
    tmp_path: Path,
) -> None:
    spool = spool_in(tmp_path)
    spool.append([Note(n) for n in (1, 2, 4)])
    store = RefusesOdd()

    def lost_after_two(notes: list[Note]) -> bool:
        if store.pushes == 2:
            raise ConnectionError("connection lost")
        return store.push(notes)

    with pytest.raises(ConnectionError):
        spool.replay(lost_after_two)  # all (refused), 1 (refused: set aside), 2-4: lost
    assert rejected_records(spool) == [(1, "WRONGTYPE for notes [1]")]
    assert spool.replay(store.push) == 2 and store.taken == [2, 4]


def test_records_appended_while_a_replay_rewrites_the_spool_are_kept(tmp_path: Path) -> None:
    """A replay that took some records leaves the others in a new file renamed over the spool;
    an append that was waiting for the lock meanwhile writes to the new file, not the old."""
    spool = spool_in(tmp_path)
    spool.append([Note(n) for n in (0, 1, 2)])
    store = RefusesOdd(down_after=3)  # all refused, 0 taken, 1-2 refused, Redis gone
    appending = threading.Event()

    def slow_push(notes: list[Note]) -> bool:
        if store.pushes == 0:
            appending.set()
            time.sleep(0.3)  # the append below waits on the lock meanwhile
        return store.push(notes)

    appender = threading.Thread(target=lambda: appending.wait(10) and spool.append([Note(4)]))
    appender.start()
    assert spool.replay(slow_push) == 1
    appender.join(10)
    store.down_after = None
    assert spool.replay(store.push) == 2
    assert store.taken == [0, 2, 4]
    assert rejected_records(spool) == [(1, "WRONGTYPE for notes [1]")]


def test_records_left_for_a_later_replay_are_written_back_as_prepared(tmp_path: Path) -> None:
    """`prepare` (e.g. an id from each record's place in the spool) sees the whole spool once;
    what a partial replay leaves keeps what it gave, though the places change."""
    spool = spool_in(tmp_path)
    spool.append([Note(n) for n in (0, 1, 2, 4)])
    store = RefusesOdd(down_after=3)  # all refused, 0-1 refused, 0 taken, then Redis is gone
    prepared: list[list[int]] = []

    def by_place(notes: list[Note]) -> list[Note]:
        prepared.append([note.n for note in notes])
        return [
            note if note.n >= 100 else Note(100 * place + note.n)
            for place, note in enumerate(notes)
        ]

    assert spool.replay(store.push, prepare=by_place) == 1
    store.down_after = None
    assert spool.replay(store.push, prepare=by_place) == 2
    assert prepared == [[0, 1, 2, 4], [101, 202, 304]]
    assert store.taken == [0, 202, 304]
    assert rejected_records(spool) == [(101, "WRONGTYPE for notes [101]")]


def rejected_entry_bytes(note: Note, reason: str) -> int:
    """The size of the `.rejected` line of a refused note (`refused_at` is a float of the clock:
    its digits vary, so the line is measured with the longest form a timestamp takes here)."""
    entry = {"reason": reason, "refused_at": 1_700_000_000.1234567, "record": note.to_dict()}
    return len(json.dumps(entry)) + 1


def test_a_full_rejected_file_refuses_further_set_asides_counts_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream of records the store refuses on their data must not fill the disk: past
    `rejected_max_bytes` the `.rejected` file keeps what it has and takes no more; what it
    refused is counted by kind (`on_not_set_aside`) and logged, and leaves the spool all the
    same (pushing it again would be refused again)."""
    room = rejected_entry_bytes(Note(1), "WRONGTYPE for notes [1]") + 4
    spool = spool_in(tmp_path, rejected_max_bytes=room)
    lost: list[dict[str, int]] = []
    spool.on_not_set_aside.append(lambda kinds: lost.append(dict(kinds)))
    spool.append([Note(n) for n in (1, 2, 3, 4, 5)])
    store, refused = RefusesOdd(), []
    with caplog.at_level(logging.ERROR, logger="threefold.streaming.record_spool"):
        assert spool.replay(store.push, on_refused=refused.extend) == 2
    assert store.taken == [2, 4]
    assert [note.n for note, _ in refused] == [1, 3, 5]  # all refused by the store ...
    assert rejected_records(spool) == [(1, "WRONGTYPE for notes [1]")]  # ... one set aside
    assert lost == [{"Note": 2}]
    assert not spool.pending()
    assert "redis refused 1 Note record(s) of spool notes.jsonl" in caplog.text
    assert f"{spool.rejected_path} is full" in caplog.text
    assert "2 Note record(s) not set aside: lost" in caplog.text

    spool.append([Note(6)])
    with spool.path.open("a", encoding="utf-8") as handle:
        handle.write('{"n": 8')  # a line torn by a crash: no room for it either
    assert spool.replay(store.push) == 1
    spool.set_aside([(Note(7), "WRONGTYPE")])  # one a worker kept in memory: refused as well
    assert lost[1:] == [{"unreadable": 1}, {"Note": 1}]
    assert rejected_records(spool) == [(1, "WRONGTYPE for notes [1]")]
    assert spool.rejected_path.stat().st_size <= room
    assert not spool.pending()


def test_the_rejected_file_is_bounded_like_the_spool_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    assert spool_in(tmp_path, max_bytes=1000).rejected_max_bytes == 1000
    assert spool_in(tmp_path, max_bytes=1000, rejected_max_bytes=50).rejected_max_bytes == 50
    assert spool_in(tmp_path).rejected_max_bytes is None  # no limit at all, as before
    with pytest.raises(ValueError, match=r"rejected_max_bytes must be >= 1 .*, found 0"):
        spool_in(tmp_path, rejected_max_bytes=0)


def test_an_emptied_spool_file_can_be_removed_and_a_waiting_one_is_kept(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    spool.append([Note(1)])
    assert not spool.remove_if_empty() and spool.count() == 1
    spool.replay(lambda notes: True)
    assert spool.remove_if_empty() and not spool.path.exists()
    assert not spool.remove_if_empty()  # none there: nothing to do
    spool.append([Note(2)])  # an append after it starts a new file
    assert spool.count() == 1


def test_a_redis_server_is_named_without_its_credentials() -> None:
    """What `spool_file_name` digests: where the keys live, the defaults filled in."""
    assert redis_server("redis://agent:s3cret@Cache.internal:6380/2") == "cache.internal:6380/2"
    assert redis_server("rediss://:s3cret@cache?db=3") == "cache:6379/3"
    assert redis_server("unix:///run/redis.sock?db=1") == "unix:/run/redis.sock/1"
    assert "s3cret" not in redis_server("redis://agent:s3cret@cache:no-port/0")  # unreadable
    name = spool_file_name("notes", "shop:", "redis://agent:s3cret@cache:6379/0")
    assert name.startswith("notes-shop-") and name.endswith(".jsonl") and "s3cret" not in name


def _refuse_all(notes: list[Note]) -> bool:
    raise RecordsRefused("WRONGTYPE")


def test_a_record_lost_to_a_full_rejected_file_is_reported_last(tmp_path: Path) -> None:
    """A record lost to a full `.rejected` file is reported after it left the spool and after it
    was reported refused: a metrics scrape at any instant never sees more lost than refused."""
    spool = RecordSpool(tmp_path, file_name="notes.jsonl", record_type=Note, rejected_max_bytes=8)
    spool.append([Note(1), Note(2)])
    refused: list[Note] = []
    seen_when_lost: list[tuple[dict[str, int], int, int]] = []

    def lost(kinds: Counter[str]) -> None:  # what a scrape at this instant reads
        seen_when_lost.append((dict(kinds), len(refused), spool.count()))

    spool.on_not_set_aside.append(lost)
    spool.replay(_refuse_all, on_refused=lambda pairs: refused.extend(r for r, _ in pairs))
    assert refused == [Note(1), Note(2)]
    assert seen_when_lost == [({"Note": 2}, 2, 0)]
