"""bench/recs_sampled_softmax.py runs end to end on the shipped data and writes its README row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sampled_softmax_benchmark_runs_end_to_end(tmp_path: Path, shipped_recs_data: Path) -> None:
    data = shipped_recs_data
    out = tmp_path / "recs_sampled_softmax.json"
    command = [sys.executable, "-m", "bench.recs_sampled_softmax", "--data", str(data)]
    command += ["--negatives", "8", "--seeds", "1", "--sequence-seconds", "3", "--threads", "1"]
    done = subprocess.run([*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())

    assert [row["variant"] for row in result["summary"]] == ["full_softmax", "sampled_8"]
    assert {run["seed"] for run in result["runs"]} == {1}
    assert all(0 <= row["ndcg@10"] <= 1 for row in result["summary"])

    from bench.report import recs_sampled_softmax

    (row,) = recs_sampled_softmax(result)
    assert "8 sampled negatives: ndcg@10" in row[2] and row[3].startswith("full softmax")
