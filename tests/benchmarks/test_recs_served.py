"""bench/recs_served.py runs end to end on the shipped data and writes what the README row reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_served_benchmark_runs_end_to_end(tmp_path: Path, shipped_recs_data: Path) -> None:
    data = shipped_recs_data
    out = tmp_path / "recs_served.json"
    command = [sys.executable, "-m", "bench.recs_served", "--data", str(data)]
    command += ["--sequence-seconds", "5", "--threads", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())

    variants = result["variants"]
    assert set(variants) == {
        "all_items",
        "served",
        "served_without_sequence_candidates",
        "served_200_cooccurrence_neighbours",
        "served_int8_queries",
        "served_before",
    }
    users = variants["all_items"]["users"]
    assert users > 10
    for name, row in variants.items():
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0, name
        if name != "all_items":
            assert row["users"] == users and 0.0 <= row["top_k_in_pool"] <= 1.0
            assert "mrr" not in row  # a list of k holds no rank beyond k
    # the sequence ranker's best items are candidates: the pool holds at least as much
    assert (
        variants["served"]["top_k_in_pool"]
        >= variants["served_without_sequence_candidates"]["top_k_in_pool"]
    )
    assert variants["served"]["options"]["neighbours"] is None  # the model's own (all)
    assert result["served_query_vectors"] == "fp32"  # a catalog below QUANTIZE_QUERIES_FROM
    assert variants["served_int8_queries"]["options"]["quantize_queries"] is True
    assert "| served |" in done.stdout

    from bench.report import recs_served

    (row,) = recs_served(result)
    assert "ndcg@10" in row[2] and row[5] == "`bench/recs_served.py`"
