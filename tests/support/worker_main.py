"""Run as `python -m support.worker_main`: a job defined in the main module itself."""

from __future__ import annotations

from threefold.core.worker_processes import run_in_processes


def triple(value: int) -> int:
    return 3 * value


if __name__ == "__main__":
    print(run_in_processes(triple, [(1,), (2,)], processes=2))
