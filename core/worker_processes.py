"""Independent CPU-bound jobs run at once in child Python processes, their log lines forwarded here.

Used to train models that share no state (the sequence ensemble's members) on several cores: one
torch process uses its cores poorly on small models, and threads would share torch's global RNG.
Each job runs in a fresh interpreter (`python -m threefold.core.worker_processes`), neither a fork
nor a multiprocessing spawn: nothing of this process's threads, locks or `__main__` script is
copied or re-run, so it works the same from a server, a notebook, stdin or a script without a
main guard.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from threefold.core.errors import ConfigError

Result = TypeVar("Result")

_LENGTH = struct.Struct(">I")
JOB_FILE, RESULT_FILE = "job.pkl", "result.pkl"


class WorkerError(RuntimeError):
    """A worker process ended without returning (killed, out of memory) or its job failed; in
    the second case it is the cause of the job's own exception, with the worker's traceback."""


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_process_count(setting: str, value: object) -> None:
    """Refuse a process-count setting that is not an integer >= 1 or None (one per CPU core)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(
            f"{setting} must be an integer >= 1 or None (one per CPU core), found {value!r}"
        )


def run_in_processes(
    function: Callable[..., Result], calls: Sequence[tuple[Any, ...]], *, processes: int
) -> list[Result]:
    """`[function(*args) for args in calls]`, with up to `processes` calls running at once.

    Each call runs in its own child interpreter, so `function` must be importable by its module
    name (not defined in `__main__`) and its arguments and result picklable. Results come back
    in the order of `calls`; the first call that raised re-raises its exception here. The
    workers' log records at this process's effective root level reach this process's handlers.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, found {processes!r}")
    function = _importable(function)
    level = logging.getLogger().getEffectiveLevel()
    with tempfile.TemporaryDirectory(prefix="threefold-workers-") as scratch:
        pool = ThreadPoolExecutor(max_workers=min(processes, len(calls)) or 1)
        try:
            futures = [
                pool.submit(_run_one, function, args, Path(scratch) / f"job-{i}", level)
                for i, args in enumerate(calls)
            ]
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # jobs not started are dropped


def _importable(function: Callable[..., Result]) -> Callable[..., Result]:
    """`function`, or for one defined in a `python -m` main module, the same function from that
    module imported by its name (which a worker can import without running the main guard)."""
    if function.__module__ != "__main__":
        return function
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        found = getattr(importlib.import_module(spec.name), function.__qualname__, None)
        if callable(found):
            return found
    raise ValueError(
        f"{function.__qualname__} is defined in a __main__ script, which a worker process "
        "cannot import. Fix: move it into a module, or run the script with python -m"
    )


def _run_one(function: Callable[..., Any], args: tuple, folder: Path, level: int) -> Any:
    """Start one worker, relay its log records until it exits, return or raise its outcome."""
    folder.mkdir()
    (folder / JOB_FILE).write_bytes(pickle.dumps((function, args, level)))
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(folder), str(write_end)],
            pass_fds=(write_end,),
            env={**os.environ, "PYTHONPATH": os.pathsep.join(_import_path())},
        )
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as logs:
            _relay_logs(logs)
        code = child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    if not (folder / RESULT_FILE).is_file():
        raise WorkerError(
            f"the worker process of {function.__qualname__} exited with code {code} before it "
            "returned (killed, or out of memory?); its log lines above show how far it got"
        )
    succeeded, value, trace = pickle.loads((folder / RESULT_FILE).read_bytes())
    if succeeded:
        return value
    raise value from WorkerError(f"in the worker process of {function.__qualname__}:\n{trace}")


def _import_path() -> list[str]:
    """This process's sys.path, so a worker imports the same modules (the cwd spelt out)."""
    return [entry or os.getcwd() for entry in sys.path]


def _relay_logs(stream: IO[bytes]) -> None:
    """Re-log each record a worker sends, as if logged here, until the worker closes the pipe."""
    while header := stream.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(header)
        record = logging.makeLogRecord(pickle.loads(stream.read(size)))
        logging.getLogger(record.name).handle(record)


class _PipeHandler(logging.Handler):
    """In a worker: each record, its message formatted, length-prefixed down the pipe."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(record.__dict__)
        fields["msg"], fields["args"] = record.getMessage(), None
        if record.exc_info:
            fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
        fields["exc_info"] = None
        data = pickle.dumps(fields)
        try:
            self.stream.write(_LENGTH.pack(len(data)) + data)
            self.stream.flush()
        except BrokenPipeError:  # the parent is gone: nobody waits for this job any more
            os._exit(1)


def _work(folder: Path, log_fd: int) -> None:
    """A worker's whole life: read the job, run it with logs piped home, write the outcome."""
    with os.fdopen(log_fd, "wb") as logs:
        root = logging.getLogger()
        root.handlers[:] = [_PipeHandler(logs)]
        try:
            function, args, level = pickle.loads((folder / JOB_FILE).read_bytes())
            root.setLevel(level)
            outcome = (True, function(*args), None)
        except BaseException as exc:  # every failure goes back to the caller
            outcome = (False, _picklable(exc), traceback.format_exc())
        try:
            data = pickle.dumps(outcome)
        except Exception as exc:  # a result that cannot travel is an error
            error = WorkerError(f"the job's result cannot be pickled: {type(exc).__name__}: {exc}")
            data = pickle.dumps((False, error, traceback.format_exc()))
        partial = folder / f"{RESULT_FILE}.partial"
        partial.write_bytes(data)
        os.replace(partial, folder / RESULT_FILE)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # any exception that cannot travel is described instead
        return WorkerError(f"{type(exc).__name__}: {exc}")
    return exc


if __name__ == "__main__":
    # by its real name, so WorkerError pickles as threefold.core.worker_processes.WorkerError
    from threefold.core.worker_processes import _work as work

    work(Path(sys.argv[1]), int(sys.argv[2]))
