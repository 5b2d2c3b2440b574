"""`run_in_processes`: real spawned workers, results in order, errors and log lines forwarded."""

from __future__ import annotations

import logging
import os

import pytest
from support.worker_jobs import log_then_return, refuse, square_and_pid

from threefold.core.errors import ConfigError
from threefold.core.worker_processes import cpu_count, run_in_processes


def test_results_come_back_in_call_order_from_other_processes():
    results = run_in_processes(square_and_pid, [(n,) for n in range(5)], processes=2)
    assert [value for value, _ in results] == [0, 1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in results}


def test_a_workers_exception_is_raised_here_with_its_type_and_message():
    with pytest.raises(ConfigError, match="job 3 refused: expected an even number, found 3"):
        run_in_processes(refuse, [(3,), (5,)], processes=2)


def test_worker_log_records_reach_this_process_at_its_level(caplog):
    caplog.set_level(logging.INFO)
    assert run_in_processes(log_then_return, [("left",), ("right",)], processes=2) == [
        "left",
        "right",
    ]
    forwarded = [r for r in caplog.records if r.name == "tests.worker_jobs"]
    assert sorted(r.getMessage() for r in forwarded) == ["worker says left", "worker says right"]
    assert {r.process for r in forwarded} - {os.getpid()} == {r.process for r in forwarded}


def test_processes_below_one_is_refused_and_cpu_count_is_positive():
    with pytest.raises(ValueError, match="processes must be >= 1, found 0"):
        run_in_processes(square_and_pid, [(1,)], processes=0)
    assert cpu_count() >= 1
