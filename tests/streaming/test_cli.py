"""`threefold stream services`: embedded services for a demo shell, stopped on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

pytestmark = pytest.mark.integration


def test_services_command_prints_urls_and_stops_on_sigterm() -> None:
    code = "from threefold.streaming.cli import stream; stream()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "services", "--no-kafka"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("export REDIS_URL=redis://127.0.0.1:")
        url = line.split("=", 1)[1]
        assert redis.Redis.from_url(url).ping()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
