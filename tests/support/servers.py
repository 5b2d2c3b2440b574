"""Server processes in tests: waiting until a started server answers (and `free_port`, the
streaming services' own, for the port to start it on)."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from threefold.streaming.services import free_port

__all__ = ["free_port", "wait_until_serving"]


def wait_until_serving(
    process: subprocess.Popen, url: str, *, timeout_s: float = 30, poll_s: float = 0.2
) -> None:
    """Return once `url` answers; kill `process` and fail the test when it exits first or
    `timeout_s` passes (with the end of its stderr when that is a pipe)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=max(1.0, poll_s)).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                stderr = process.communicate()[1] if process.stderr is not None else ""
                pytest.fail(f"the server at {url} did not start: {(stderr or '')[-2000:]}")
            time.sleep(poll_s)
