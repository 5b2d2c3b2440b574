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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from threefold.streaming.record_spool import RecordSpool, SpoolFull


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
