"""`run_in_processes`: real child processes, results in order, errors and log lines forwarded."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import worker_jobs
from support.worker_jobs import die, log_then_return, refuse, square_and_pid, unpicklable_result

from threefold.core.errors import ConfigError
from threefold.core.worker_processes import (
    WorkerError,
    check_process_count,
    cpu_count,
    run_in_processes,
)


def test_results_come_back_in_call_order_from_other_processes():
    results = run_in_processes(square_and_pid, [(n,) for n in range(5)], processes=2)
    assert [value for value, _ in results] == [0, 1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in results}
    assert len({pid for _, pid in results}) == 5  # a fresh process per call


def test_a_workers_exception_is_raised_here_with_its_type_message_and_traceback():
    with pytest.raises(ConfigError, match="job 3 refused: expected an even number") as caught:
        run_in_processes(refuse, [(3,), (5,)], processes=2)
    cause = caught.value.__cause__
    assert isinstance(cause, WorkerError)
    assert "in the worker process of refuse" in str(cause) and "worker_jobs.py" in str(cause)


def test_a_worker_that_dies_or_returns_the_unpicklable_is_a_clear_error():
    with pytest.raises(WorkerError, match="exited with code 3 before it returned"):
        run_in_processes(die, [(3,)], processes=1)
    with pytest.raises(WorkerError, match="result cannot be pickled"):
        run_in_processes(unpicklable_result, [()], processes=1)


def test_worker_log_records_reach_this_process_at_its_level(caplog):
    caplog.set_level(logging.INFO)
    assert run_in_processes(log_then_return, [("left",), ("right",)], processes=2) == [
        "left",
        "right",
    ]
    forwarded = [r for r in caplog.records if r.name == "tests.worker_jobs"]
    assert sorted(r.getMessage() for r in forwarded) == ["worker says left", "worker says right"]
    assert os.getpid() not in {r.process for r in forwarded}


def _python(arguments: list[str], cwd: Path, stdin: str | None = None) -> str:
    tests_dir = str(Path(worker_jobs.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": tests_dir},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_caller_reading_its_script_from_stdin_can_run_jobs(tmp_path: Path):
    script = (
        "from support.worker_jobs import square_and_pid\n"
        "from threefold.core.worker_processes import run_in_processes\n"
        "print([v for v, _ in run_in_processes(square_and_pid, [(2,), (3,)], processes=2)])\n"
    )  # no main guard, no file: a multiprocessing spawn would fail here
    assert _python(["-"], tmp_path, script) == "[4, 9]"


def test_a_job_defined_in_a_python_m_main_module_runs(tmp_path: Path):
    assert _python(["-m", "support.worker_main"], tmp_path) == "[3, 6]"


def test_bad_arguments_are_refused_and_cpu_count_is_positive():
    with pytest.raises(ValueError, match="processes must be >= 1, found 0"):
        run_in_processes(square_and_pid, [(1,)], processes=0)

    def local(value: int) -> int:
        return value

    local.__module__ = "__main__"
    with pytest.raises(ValueError, match="defined in a __main__ script, which a worker process"):
        run_in_processes(local, [(1,)], processes=1)
    assert cpu_count() >= 1


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_a_process_count_setting_is_an_integer_of_at_least_one(value: object) -> None:
    with pytest.raises(ConfigError, match=r"Settings.processes must be an integer >= 1 or None"):
        check_process_count("Settings.processes", value)
    check_process_count("Settings.processes", None)
    check_process_count("Settings.processes", 3)
