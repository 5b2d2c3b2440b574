"""Server processes in tests: a free port, and waiting until a started server answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
