"""Server processes in tests: waiting until a started server answers (and `free_port`, the
streaming services' own, for the port to start it on), gunicorn as deployed, and a raw GET left
open (a stream that holds a server thread)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from threefold.streaming.services import free_port

__all__ = ["free_port", "open_raw_get", "start_gunicorn", "wait_until_serving"]
GUNICORN_CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


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


def start_gunicorn(
    app: str,
    env: Mapping[str, str],
    *,
    ready_path: str,
    chdir: Path | None = None,
    timeout_s: float = 120,
) -> tuple[subprocess.Popen, int]:
    """`gunicorn -c deploy/gunicorn.conf.py APP` (as the image runs the apps) on a free port,
    with exactly `env` plus PORT, once `ready_path` answers: (process, port). stderr is a pipe;
    the caller stops the process."""
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn), "-c", str(GUNICORN_CONF)]
    argv += ["--chdir", str(chdir)] if chdir is not None else []
    process = subprocess.Popen(
        [*argv, app],
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until_serving(
        process, f"http://127.0.0.1:{port}{ready_path}", timeout_s=timeout_s, poll_s=0.5
    )
    return process, port


def open_raw_get(
    port: int, path: str, headers: Mapping[str, str] | None = None, *, timeout_s: float = 30
) -> tuple[socket.socket, str, dict[str, str], bytes]:
    """A raw GET left open: (socket, status line, headers by lower-case name, the body when the
    answer has a length). The socket is the caller's to close."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    lines = [f"GET {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    status, *fields = head.decode().split("\r\n")
    header = {k.lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
    while len(body) < int(header.get("content-length", 0)):
        body += sock.recv(4096)
    return sock, status, header, body
