"""bench/recs_build_scale.py runs end to end at a tiny size and writes what the README row reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_build_scale_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "recs_build_scale.json"
    command = [sys.executable, "-m", "bench.recs_build_scale", "--items", "600", "--users", "60"]
    command += ["--sequence-seconds", "2", "--max-steps", "1", "--requests", "5"]
    subprocess.run([*command, "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    result = json.loads(out.read_text())

    assert result["data"]["items"] == 600 and result["data"]["users"] == 60
    assert 0 < result["build"]["combiner_validation_users"] <= result["build"]["validation_users"]
    assert result["serving"]["requests"] == 5
    assert 0 < result["serving"]["recommend_ms"]["p50"] <= result["serving"]["recommend_ms"]["p99"]
    assert result["peak_rss_gib"]["process"] > 0
    assert result["build"]["sequence_softmax"] == "full"  # far below sampled_softmax_from
    assert 0 < result["build"]["sequence_trained_items"] <= 600

    from bench.report import recs_build_scale

    (row,) = recs_build_scale(result)
    assert "600 items, 60 users" in row[1] and "combiner fitted on" in row[2]
    assert "items, full softmax" in row[2]
