"""bench/recs_scale.py runs end to end at a tiny size and writes what the README row reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.integration
def test_scale_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "recs_scale.json"
    command = [sys.executable, "-m", "bench.recs_scale", "--items", "3000", "--users", "150"]
    command += ["--requests", "12", "--exact-requests", "6", "--queries", "20", "--timed", "5"]
    command += ["--nprobe", "1", "64", "--exact-threshold", "1000", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())

    exact, approximate = result["exact"], result["approximate"]
    assert exact["index"] == {"kind": "exact"}
    assert approximate["index"]["kind"] == "ivf"
    assert 1 <= approximate["index"]["nprobe"] <= approximate["index"]["nlist"]
    for mode, requests in ((exact, 6), (approximate, 12)):
        assert mode["api"]["recommendations"]["n"] == mode["api"]["similar"]["n"] == requests
        assert mode["index_bytes"] > 3000 * 384 * 4
    sweep = {row["nprobe"]: row for row in approximate["nprobe_sweep"]}
    nlist = approximate["index"]["nlist"]
    assert sweep[nlist]["recall_item"] == sweep[nlist]["recall_profile"] == 1.0  # exhaustive
    assert 0 < sweep[1]["recall_profile"] <= 1
    assert result["data"]["items"] == 3000 and result["data"]["seed"] == 0
    assert isinstance(result["goal"]["met"], bool)
    assert result["sequence"] == "ensemble" and "sequence ensemble" in result["setup"]

    row = subprocess.run(
        [sys.executable, "-c", ROW_SCRIPT, str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Recommendation API at 3,000 items, ranked with the sequence ensemble" in row
    assert "exact IndexFlatIP" in row


ROW_SCRIPT = """
import json, sys
from bench.report import recs_scale
print(recs_scale(json.loads(open(sys.argv[1]).read())))
"""
