"""bench/recs_lock_waits.py runs end to end at a tiny size and writes what the README row reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import recs_lock_waits

ROOT = Path(__file__).resolve().parents[2]


def test_lock_wait_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "recs_lock_waits.json"
    command = [sys.executable, "-m", "bench.recs_lock_waits", "--items", "3000"]
    subprocess.run([*command, "--out", str(out)], cwd=ROOT, check=True, timeout=600)
    result = json.loads(out.read_text())

    assert set(result["rows"]) == {
        "ranker swap",
        "upsert one new item",
        "upsert one existing item",
    }
    for row in result["rows"].values():
        assert row["probes"] >= 1 and row["longest_wait_ms"] >= row["p50_wait_ms"] >= 0
    (row,) = recs_lock_waits(result)
    assert row[-1] == "`bench/recs_lock_waits.py`" and "ranker swap" in row[2]
