"""Running pieces of the demo: HTTP servers on bound ports and the alerts consumer thread.

Servers are bound before their apps exist (a `_LateApp` stands in), so every port, and with it
every origin the apps must allow for CORS, is known before the apps are built; only then do
the servers start answering.

The alerts consumer runs on a thread that restarts its runner whenever `run()` raises (what
the runner does not retry by itself, such as Redis refusing the consumer), after 1 s, then
twice as long after each failure in a row, up to 30 s; each restart is an error log line
(`"event": "alerts_consumer_restart"`, the restart number, the delay and the error).
`ConsumerThread.health()` says whether it runs, for the hub's /healthz: the thread's own state
(restarting, stopped), else the runner's `status()` (starting, running, dependency_down,
kafka_down) with the reason.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threefold.core.errors import ConfigError
from threefold.streaming.connections import KafkaSettings

if TYPE_CHECKING:
    from threefold.streaming.runner import RunnerStatus

logger = logging.getLogger(__name__)

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SHUTDOWN_TIMEOUT_S = 10.0
FIRST_RESTART_S = 1.0
MAX_RESTART_S = 30.0
RECOVERED_AFTER_S = 60.0  # a run that lasted this long resets the restart backoff


class _LateApp:
    """A WSGI app whose real app is set after the server socket is bound."""

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"starting\n"]
        return self.app(environ, start_response)


@dataclass
class AppServer:
    """One threaded werkzeug server bound to host:port."""

    name: str
    host: str
    server: Any
    slot: _LateApp
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL a local browser uses (wildcard binds shown as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self, app: Callable[..., Any]) -> None:
        self.slot.app = app
        self.thread = threading.Thread(
            target=self.server.serve_forever, name=f"demo-{self.name}", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the socket (idempotent)."""
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=SHUTDOWN_TIMEOUT_S)
            self.thread = None
        self.server.server_close()


def bind_servers(host: str, names: Iterable[str], port_base: int | None) -> dict[str, AppServer]:
    """Bind one server per name: ports port_base, port_base+1, ... or free ones when None."""
    from werkzeug.serving import make_server

    from threefold.core.server_errors import JsonErrorRequestHandler

    bound: dict[str, AppServer] = {}
    try:
        for offset, name in enumerate(names):
            port = 0 if port_base is None else port_base + offset
            slot = _LateApp()
            with _listening_socket(host, port, name) as sock:
                # werkzeug serves a duplicate of the bound socket (it exits on bind errors).
                server = make_server(
                    host,
                    sock.getsockname()[1],
                    slot,
                    threaded=True,
                    fd=sock.fileno(),
                    request_handler=JsonErrorRequestHandler,
                )
            bound[name] = AppServer(name=name, host=host, server=server, slot=slot)
    except BaseException:
        for server in bound.values():
            server.stop()
        raise
    return bound


def _listening_socket(host: str, port: int, name: str) -> socket.socket:
    """A TCP socket bound to host:port and listening; ConfigError naming the app otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"could not listen on {host}:{port} for the {name} app ({exc.strerror}); "
            "pick another --port-base, or leave it out to use free ports"
        ) from exc
    return sock


def browser_origins(server: AppServer) -> tuple[str, ...]:
    """Origins of pages served by `server`: loopback names plus the bound host (or hostname)."""
    hosts = {"127.0.0.1", "localhost"}
    if server.host in WILDCARD_HOSTS:
        hosts.add(socket.gethostname())
    else:
        hosts.add(f"[{server.host}]" if ":" in server.host else server.host)
    return tuple(sorted(f"http://{h}:{server.port}" for h in hosts))


@dataclass(frozen=True)
class ConsumerHealth:
    """The alerts consumer as the hub's /healthz reports it.

    `state`: starting (not started, or no poll yet), running, dependency_down (Redis away: the
    runner retries by itself), kafka_down (the runner reconnects by itself), restarting
    (stopped with an error, restarted after a backoff) or stopped.
    """

    state: str
    restarts: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "running"


@dataclass
class ConsumerThread:
    """Runs a ConsumerRunner in a thread and restarts it, with backoff, when it fails."""

    runner: Any
    processor: Any
    first_restart_s: float = FIRST_RESTART_S
    max_restart_s: float = MAX_RESTART_S
    error: Exception | None = None  # the last failure
    restarts: int = 0
    thread: threading.Thread | None = field(default=None, repr=False)
    _restart_at: float | None = field(default=None, repr=False)  # monotonic; None: not waiting
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="demo-alerts-consumer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        failures = 0  # in a row: a run that lasted RECOVERED_AFTER_S starts the count again
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.runner.run()
            except Exception as exc:
                if self._stopping.is_set():
                    logger.info("the alerts consumer stopped with %r while stopping", exc)
                    return
                recovered = time.monotonic() - started >= RECOVERED_AFTER_S
                failures = 1 if recovered else failures + 1
                delay = min(self.max_restart_s, self.first_restart_s * 2 ** (failures - 1))
                self._failed(exc, delay)
                self._stopping.wait(delay)
                self._restart_at = None
            else:
                return  # run() returns once stopped

    def _failed(self, exc: Exception, delay: float) -> None:
        self.error = exc
        self.restarts += 1
        self._restart_at = time.monotonic() + delay
        logger.error(
            "the alerts consumer stopped with an error (%s); restarting it in %.1f s (restart %d)",
            _describe(exc),
            delay,
            self.restarts,
            exc_info=exc,
            extra={
                "fields": {
                    "event": "alerts_consumer_restart",
                    "restart": self.restarts,
                    "delay_s": delay,
                    "error": _describe(exc),
                }
            },
        )

    def health(self) -> ConsumerHealth:
        """Whether the consumer runs now, and why not."""
        thread, restart_at = self.thread, self._restart_at
        if thread is None:
            return ConsumerHealth("starting", reason="the alerts consumer has not started yet")
        if not thread.is_alive():
            why = "the demo is stopping" if self._stopping.is_set() else "its thread ended"
            return ConsumerHealth("stopped", self.restarts, f"the alerts consumer stopped: {why}")
        if restart_at is not None:
            wait_s = max(0.0, restart_at - time.monotonic())
            reason = (
                f"the alerts consumer stopped with an error ({_describe(self.error)}); "
                f"restart {self.restarts} in {wait_s:.0f} s. Headlines wait in the input topic "
                "meanwhile; see the log (event alerts_consumer_restart)"
            )
            return ConsumerHealth("restarting", self.restarts, reason)
        status = self.runner.status()
        if status.state == "running":
            return ConsumerHealth("running", self.restarts)
        return ConsumerHealth(status.state, self.restarts, self._runner_reason(status))

    def _runner_reason(self, status: RunnerStatus) -> str:
        """Why the runner does not run, from its status (`ConsumerRunner.status()`)."""
        from threefold.apps.alerts.web.consumer_health import describe_outage

        outage = describe_outage(status.to_dict(), time.time())
        if status.state == "dependency_down":
            return (
                f"the alerts consumer's Redis is down {outage}; it retries by itself and "
                "headlines wait in the input topic meanwhile (log event dependency_retry)"
            )
        if status.state == "kafka_down":
            return (
                f"the alerts consumer cannot reach Kafka at {self.runner.bootstrap} {outage}; "
                "it reconnects by itself"
            )
        if status.state == "starting":
            return "the alerts consumer is joining its group (no poll yet)"
        return f"the alerts consumer stopped ({status.reason or 'asked to stop'})"

    @property
    def processed(self) -> int:
        return int(self.runner.stats.processed)

    def stop(self) -> None:
        """Finish the current batch, commit, leave the group; close the alert publisher (its
        producer, topic probe and webhook: a client left open retries the stopped broker)."""
        self._stopping.set()
        self.runner.stop()
        if self.thread is not None:
            self.thread.join(timeout=SHUTDOWN_TIMEOUT_S)
            if self.thread.is_alive():
                logger.warning("the alerts consumer did not stop within %.0f s", SHUTDOWN_TIMEOUT_S)
        publisher = getattr(self.processor, "publisher", None)
        if publisher is not None:  # as `threefold alerts consume` does: its probe is a client too
            try:
                publisher.close()
            except Exception as exc:  # closing is best effort once the broker may be gone
                logger.info("closing the alert publisher: %r", exc)


def _describe(exc: BaseException | None) -> str:
    return "unknown" if exc is None else f"{type(exc).__name__}: {exc}"


def wait_for_alert(
    kafka: KafkaSettings,
    topic: str,
    *,
    timeout_s: float,
    progress: Callable[[], None] | None = None,
) -> dict | None:
    """The first alert on `topic` (read from the beginning, no group), or None after timeout_s."""
    import json

    from kafka import TopicPartition

    from threefold.streaming.kafka_calls import new_consumer

    consumer = new_consumer(
        {
            **kafka.client_config(),
            "group_id": None,
            "enable_auto_commit": False,
            "client_id": "threefold-demo-alert-watch",
        }
    )
    try:
        known = consumer.partitions_for_topic(topic) or {0}
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if progress is not None:
                progress()
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    try:
                        return json.loads(record.value)
                    except ValueError:
                        logger.warning("skipping a non-JSON record on %s", topic)
        return None
    finally:
        consumer.close()
