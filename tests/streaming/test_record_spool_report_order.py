"""What a replay reports, in an order a metrics scrape can read at any instant: a record lost
to a full `.rejected` file is reported after it left the spool and after it was reported
refused, so a scrape never sees more records lost than refused."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threefold.streaming.record_spool import RecordSpool, RecordsRefused


@dataclass(frozen=True)
class Note:
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Note:
        return cls(int(data["n"]))


def refuse_all(notes: list[Note]) -> bool:
    raise RecordsRefused("WRONGTYPE")


def test_a_record_lost_to_a_full_rejected_file_is_reported_last(tmp_path: Path) -> None:
    spool = RecordSpool(tmp_path, file_name="notes.jsonl", record_type=Note, rejected_max_bytes=8)
    spool.append([Note(1), Note(2)])
    refused: list[Note] = []
    seen_when_lost: list[tuple[dict[str, int], int, int]] = []

    def lost(kinds: Counter[str]) -> None:  # what a scrape at this instant reads
        seen_when_lost.append((dict(kinds), len(refused), spool.count()))

    spool.on_not_set_aside.append(lost)
    spool.replay(refuse_all, on_refused=lambda pairs: refused.extend(record for record, _ in pairs))
    assert refused == [Note(1), Note(2)]
    assert seen_when_lost == [({"Note": 2}, 2, 0)]
