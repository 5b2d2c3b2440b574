"""Embedded redis-server and tansu broker: start, answer, stop without leaving processes behind."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from threefold.core.errors import ServiceError
from threefold.streaming import services as svc

pytestmark = pytest.mark.integration
_PR_SET_CHILD_SUBREAPER = 36


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:
            found.add(int(stat.parent.name))
    return found


def _reaped(pid: int, seconds: float = 15.0) -> bool:
    """Wait for an orphan reparented to this (subreaper) process to exit, and reap it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:  # not ours (no subreaper support): fall back to polling
            if not _alive(pid):
                return True
        time.sleep(0.1)
    return False


def test_redis_answers_and_stop_leaves_no_process() -> None:
    service = svc.start_redis()
    pid = service.pid
    client = redis.Redis.from_url(service.url)
    client.set("k", b"v")
    assert client.get("k") == b"v"
    client.close()
    service.stop()
    assert not _alive(pid)
    service.stop()  # idempotent


def test_redis_data_dir_survives_restart(tmp_path: Path) -> None:
    first = svc.start_redis(data_dir=tmp_path)
    client = redis.Redis.from_url(first.url)
    client.set("kept", b"yes")
    client.close()
    first.stop()
    second = svc.start_redis(data_dir=tmp_path)
    try:
        client = redis.Redis.from_url(second.url)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        second.stop()


def test_kafka_serves_metadata_and_stop_leaves_no_process() -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    service = svc.start_kafka()
    pid = service.pid
    admin = KafkaAdminClient(bootstrap_servers=service.bootstrap_servers)
    admin.create_topics([NewTopic("made-here", 1, 1)])
    assert "made-here" in admin.list_topics()
    admin.close()
    service.stop()
    assert not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_services_uses_given_values_and_starts_nothing(
    redis_url: str, kafka_bootstrap: str
) -> None:
    before = _children()
    with svc.services(redis_url, kafka_bootstrap) as (url, bootstrap):
        assert (url, bootstrap) == (redis_url, kafka_bootstrap)
        assert _children() - before == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_connected_keeps_given_security_settings_and_starts_nothing(tmp_path: Path) -> None:
    from threefold.streaming.connections import KafkaSettings, RedisSettings

    (tmp_path / "pw").write_text("pw\n")
    redis_settings = RedisSettings(url="rediss://cache:6380/0", username="app")
    kafka_settings = KafkaSettings(
        bootstrap_servers="broker:9093",
        security_protocol="SASL_SSL",
        sasl_username="app",
        sasl_password_file=tmp_path / "pw",
    )
    before = _children()
    with svc.connected(redis_settings, kafka_settings) as (redis_got, kafka_got):
        assert (redis_got, kafka_got) == (redis_settings, kafka_settings)
        assert _children() - before == set()


def test_services_starts_embedded_when_unset() -> None:
    with svc.services(None, None, need_kafka=False) as (url, bootstrap):
        assert bootstrap is None
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_services_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal
        from threefold.streaming.services import start_kafka, start_redis
        r, k = start_redis(), start_kafka()
        print(r.pid, k.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # scratch dirs a killed parent leaves behind
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come to us, so we can reap them
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        pids = [int(p) for p in done.stdout.split()]
        assert len(pids) == 2, done.stderr
        assert all(_reaped(pid) for pid in pids)
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_a_server_that_exits_is_reported_with_its_output() -> None:
    proc = svc.ManagedProcess(
        "fake",
        [sys.executable, "-c", "import sys; sys.stderr.write('bind: boom'); sys.exit(3)"],
    )
    try:
        with pytest.raises(ServiceError, match=r"(?s)exited with code 3.*bind: boom"):
            svc.wait_until_ready(proc, lambda: False, "fake server")
    finally:
        proc.stop()


def test_fixtures_give_each_test_its_own_names(unique_name, redis_prefix, redis_client) -> None:
    first, second = unique_name("scored"), unique_name("scored")
    assert first != second
    assert first.startswith("scored-fixtures-give-each-test-its-own-names-")
    assert all(c.isalnum() or c in "-._" for c in first)
    assert redis_prefix.endswith(":") and "fixtures-give" in redis_prefix
    redis_client.set(f"{redis_prefix}k", b"v")
    assert redis_client.get(f"{redis_prefix}k") == b"v"
