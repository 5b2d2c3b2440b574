"""Jobs for `run_in_processes` tests: spawned workers import them by name, so not in a test file."""

from __future__ import annotations

import logging
import os

from threefold.core.errors import ConfigError


def square_and_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def log_then_return(message: str) -> str:
    logging.getLogger("tests.worker_jobs").info("worker says %s", message)
    logging.getLogger("tests.worker_jobs").debug("below the parent's level: %s", message)
    return message


def refuse(value: int) -> int:
    raise ConfigError(f"job {value} refused: expected an even number, found {value}")


def die(code: int) -> None:
    os._exit(code)


def unpicklable_result() -> object:
    return lambda: None
