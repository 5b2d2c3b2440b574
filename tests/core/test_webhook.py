"""Webhook delivery: best effort (`WebhookSender`) and at least once from an outbox
(`OutboxSender`), against real local HTTP receivers (http.server threads and raw sockets);
failures are reported, never raised."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.slow_network import (
    HOLD_S,
    FakeDNS,
    silent_tls_receiver,
    socket_timeout,
    syn_dropping_address,
)

from threefold.core.webhook import (
    IDEMPOTENCY_HEADER,
    InMemoryOutbox,
    OutboxSender,
    PostResult,
    WebhookSender,
    post_json,
    retry_delay,
)

ALERT = {"alert_id": "a-1", "key": "entity:QNTV", "window_end_ts": 300, "summary": "surge"}


class StatusServer:
    """A local HTTP receiver: answers POSTs with `statuses` in turn (204 once they run out;
    a status in the path, /status/404, wins), GETs with 200; each answer after `delay_s`.
    Records (method, path) per request."""

    def __init__(self, statuses: list[int] | None = None, *, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append(("POST", self.path))
                time.sleep(delay_s)
                status = 204
                if self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[1])
                elif server.statuses:
                    status = server.statuses.pop(0)
                body = b"" if status < 300 else b'{"error":  "nope",\n "why": "bad"}'
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "https://user:pw@hooks.example/v2?token=s3cret")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def status_server() -> Iterator[Callable[..., StatusServer]]:
    made: list[StatusServer] = []

    def make(statuses: list[int] | None = None, **kwargs) -> StatusServer:
        made.append(StatusServer(statuses, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """`raw_server(answer)` -> URL of a TCP server calling `answer(connection)` per request."""
    listeners: list[socket.socket] = []

    def make(answer: Callable[[socket.socket], None]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # closed at teardown
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

    yield make
    for each in listeners:
        each.close()


def read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of the HTTP request on `conn`, read in full (closing a socket with unread
    data resets the connection, and the client may miss the answer)."""
    with conn.makefile("rb") as stream:
        head = b"".join(iter(stream.readline, b"\r\n"))
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, stream.read(length)


def trickling(conn: socket.socket, lines: int = 40) -> None:
    """Answer 200 with a header line every 0.2 s: no single read ever times out."""
    with conn:
        read_request(conn)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(lines):
                time.sleep(0.2)
                conn.sendall(b"X-Slow: 1\r\n")
            conn.sendall(b"Content-Length: 0\r\n\r\n")
        except OSError:  # the client gave up
            pass


def garbage(conn: socket.socket) -> None:
    """Answer an HTTP request with something that is not HTTP."""
    with conn:
        read_request(conn)
        conn.sendall(b"HELLO WORLD\r\n\r\n")


def post(url: str, timeout_s: float = 2.0) -> PostResult:
    return post_json(url, ALERT, timeout_s=timeout_s, user_agent="test")


# -- post_json: what counts as delivered, retried or rejected -------------------------------------


def test_post_json_reports_what_the_network_or_receiver_did_instead_of_raising(raw_server):
    garbled = post(raw_server(garbage))
    assert not garbled.ok and garbled.status is None
    assert garbled.error.startswith("BadStatusLine: HELLO WORLD")
    for url in ("not a url", "http://127.0.0.1:notaport/", "http://[::1/hook"):
        assert not post(url).ok


def test_a_redirect_is_a_failed_attempt_that_says_where_it_points(status_server):
    server = status_server([302])
    result = post(server.url + "/alerts")
    assert not result.ok and not result.rejected and result.status == 302
    assert "redirected to https://hooks.example/v2" in result.error
    assert "configure the final URL" in result.error
    assert "s3cret" not in result.error and "pw@" not in result.error  # tokens not logged
    assert server.requests == [("POST", "/alerts")]  # not followed as a GET without its body


@pytest.mark.parametrize(
    ("status", "rejected"),
    [(s, True) for s in (400, 401, 403, 404, 410, 413, 422)]
    + [(s, False) for s in (301, 307, 308, 408, 409, 425, 429, 500, 502, 503)],
)
def test_a_4xx_that_retrying_cannot_fix_is_a_rejection(status_server, status, rejected):
    result = post(f"{status_server().url}/status/{status}")
    assert (result.ok, result.status, result.rejected) == (False, status, rejected)
    if 400 <= status < 600:
        assert result.answer == '{"error": "nope", "why": "bad"}'  # the body's start, one line


def test_an_attempt_ends_after_timeout_s_in_all_even_if_the_answer_trickles(raw_server):
    started = time.monotonic()
    result = post(raw_server(trickling), timeout_s=0.6)
    assert time.monotonic() - started < 2.0  # not the 8 s the trickle takes
    assert not result.ok and result.error == "timed out: no complete answer within 0.6 s"


def test_https_is_posted_and_bounded_alike(raw_server, tls_files, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))  # trust the test CA
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)

    def answer(conn: socket.socket, lines: int) -> None:
        trickling(context.wrap_socket(conn, server_side=True), lines)

    url = raw_server(lambda conn: answer(conn, lines=0)).replace("http:", "https:")
    assert post(url).ok
    url = raw_server(lambda conn: answer(conn, lines=40)).replace("http:", "https:")
    started = time.monotonic()
    result = post(url, timeout_s=0.6)
    assert time.monotonic() - started < 2.0
    assert result.error == "timed out: no complete answer within 0.6 s"


# -- one deadline for the whole attempt: resolving, connecting, the TLS handshake ------------------
# Each test gives urllib's sockets a timeout far past the attempt's deadline (or none), so what
# ends the attempt is the deadline, and it ends while the slow network still holds out.

SLOW_HOST = "slow-dns.test"


@pytest.fixture
def fake_dns(monkeypatch) -> Iterator[Callable[[list[tuple[str, int]]], FakeDNS]]:
    made: list[FakeDNS] = []

    def install(addresses: list[tuple[str, int]]) -> FakeDNS:
        made.append(FakeDNS(SLOW_HOST, addresses))
        monkeypatch.setattr(socket, "getaddrinfo", made[-1])
        return made[-1]

    yield install
    for dns in made:
        dns.release()  # lets the resolving thread the attempt left behind end


def test_a_name_that_never_resolves_ends_the_attempt_at_its_deadline(
    fake_dns, status_server, monkeypatch
):
    socket_timeout(monkeypatch, None)
    port = int(status_server().url.rsplit(":", 1)[1])
    dns = fake_dns([("127.0.0.1", port)])
    result = post(f"http://{SLOW_HOST}:{port}/hook", timeout_s=0.5)
    assert result.error == "timed out: no complete answer within 0.5 s"
    assert dns.asked.is_set() and not dns.answered.is_set()  # it ended while DNS held out


def test_connecting_to_several_silent_addresses_ends_at_the_deadline_not_per_address(
    fake_dns, monkeypatch
):
    """Each address gets what is left of the attempt, not a socket timeout of its own."""
    socket_timeout(monkeypatch, HOLD_S)
    with syn_dropping_address() as (host, port):
        fake_dns([(host, port), (host, port)]).release()  # answers at once
        started = time.monotonic()
        result = post(f"http://{SLOW_HOST}:{port}/hook", timeout_s=0.5)
        took = time.monotonic() - started
    assert result.error == "timed out: no complete answer within 0.5 s"
    assert took < HOLD_S / 2  # not the socket timeout of one address, let alone two


def test_a_tls_handshake_never_answered_ends_at_the_deadline_not_the_socket_timeout(
    monkeypatch,
):
    socket_timeout(monkeypatch, HOLD_S * 2)
    with silent_tls_receiver() as (url, held):
        result = post(url, timeout_s=0.5)
        assert held.is_set()  # the receiver still holds the connection: the deadline ended it
    assert result.error == "timed out: no complete answer within 0.5 s"


# -- WebhookSender: best effort from an in-memory queue -------------------------------------------


def test_alert_is_posted_as_json(webhook_server):
    url, received = webhook_server
    notifier = WebhookSender(url)
    notifier.send(ALERT)
    notifier.close()
    assert [received.get_nowait() for _ in range(received.qsize())] == [ALERT]


def test_failed_delivery_is_reported_not_raised():
    failures = []
    notifier = WebhookSender(
        "http://127.0.0.1:9/nothing-listens",
        timeout_s=0.5,
        attempts=2,
        backoff_s=0.01,
        on_result=lambda alert, error: failures.append((alert["alert_id"], error)),
    )
    notifier.send(ALERT)
    notifier.close()
    assert failures and failures[0][0] == "a-1"


def test_a_failing_webhook_is_retried_until_it_answers(status_server):
    server = status_server([503, 503, 204, 503, 503, 503])
    results = []
    sender = WebhookSender(
        server.url + "/a",
        timeout_s=2.0,
        attempts=3,
        backoff_s=0.001,
        on_result=lambda payload, error: results.append(error),
    )
    assert sender.deliver(ALERT) is None
    assert len(server.requests) == 3
    sender.send(ALERT)  # three 503s: reported once, after the last try
    sender.close()
    assert results == ["HTTP 503 Service Unavailable"] and len(server.requests) == 6


def test_a_rejected_payload_is_not_retried(status_server, caplog):
    server = status_server([400, 503, 503, 503])
    results = []
    sender = WebhookSender(
        server.url,
        name="handoff",
        attempts=3,
        backoff_s=0.001,
        on_result=lambda p, e: results.append(e),
    )
    with caplog.at_level("ERROR", logger="threefold.core.webhook"):
        sender.send(ALERT)
        sender.close()
    assert len(server.requests) == 1 and results == ["HTTP 400 Bad Request"]
    (record,) = caplog.records
    assert record.fields["event"] == "webhook_rejected" and record.fields["status"] == 400
    assert sender.deliver(ALERT) == "HTTP 503 Service Unavailable"  # retried: 3 tries
    assert len(server.requests) == 4


def test_the_sender_thread_outlives_a_garbled_answer_and_a_failing_hook(raw_server, caplog):
    results = []

    def on_result(payload: dict, error: str | None) -> None:
        results.append((payload["id"], error))
        if payload["id"] == 1:
            raise RuntimeError("metrics hook bug")

    sender = WebhookSender(raw_server(garbage), attempts=1, on_result=on_result)
    with caplog.at_level("ERROR", logger="threefold.core.webhook"):
        for n in (1, 2):
            sender.send({"id": n})
        sender.close()
    assert [n for n, _ in results] == [1, 2]  # the second payload went out and was reported
    assert all(error.startswith("BadStatusLine") for _, error in results)
    assert [r.fields["event"] for r in caplog.records] == ["webhook_error"]


# -- OutboxSender: at-least-once delivery from an outbox (the HTTP answers are doubles in the
# first tests; the alerts tests run it against a real receiver and Redis) -------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answering(monkeypatch, answers: list[PostResult]) -> list[tuple[str, dict]]:
    """Replace the POST with one answering `answers` in turn; returns (key, payload) per call."""
    calls: list[tuple[str, dict]] = []

    def post_json(url, payload, *, timeout_s, user_agent, headers=None):
        calls.append((headers[IDEMPOTENCY_HEADER], payload))
        return answers.pop(0)

    monkeypatch.setattr("threefold.core.webhook.post_json", post_json)
    return calls


OK = PostResult()
DOWN = PostResult("HTTP 503 Service Unavailable", 503)


def test_retry_delay_doubles_up_to_the_cap():
    assert [retry_delay(n, 1.0, 5.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(3, 0.5) == 2.0


def test_an_outbox_delivery_is_retried_with_backoff_and_removed_only_after_a_2xx(monkeypatch):
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    outbox.put("a-1", ALERT)
    timed_out = PostResult("timed out")
    calls = answering(monkeypatch, [DOWN, timed_out, OK])
    attempts = []
    sender = OutboxSender(
        "http://hooks.example/a",
        outbox,
        id_field="alert_id",
        backoff_s=1.0,
        max_backoff_s=1.5,
        on_attempt=lambda payload, result, attempt: attempts.append((attempt, result)),
    )
    assert sender.run_once() == 1 and outbox.pending() == 1  # failed: kept, due in 1 s
    assert sender.run_once() == 0  # not due yet
    clock.now = 1.0
    assert sender.run_once() == 1 and outbox.pending() == 1  # failed again: due in 1.5 s (cap)
    clock.now = 2.4
    assert sender.run_once() == 0
    clock.now = 2.5
    assert sender.run_once() == 1 and outbox.pending() == 0  # 2xx: removed
    assert calls == [("a-1", ALERT)] * 3  # the key travels as Idempotency-Key on every try
    assert attempts == [(1, DOWN), (2, timed_out), (3, OK)]


def test_a_pass_stops_at_the_first_failure_and_later_deliveries_wait(monkeypatch):
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    for key in ("a-1", "a-2", "a-3"):
        outbox.put(key, {**ALERT, "alert_id": key})
    calls = answering(monkeypatch, [OK, DOWN, OK, OK])
    sender = OutboxSender("http://hooks.example/a", outbox, backoff_s=1.0)
    assert sender.run_once() == 2  # a-1 delivered, a-2 failed: a-3 waits for the next pass
    assert sender.run_once() == 1  # a-3 (a-2 is not due yet)
    clock.now = 1.0
    assert sender.run_once() == 1 and outbox.pending() == 0
    assert [key for key, _ in calls] == ["a-1", "a-2", "a-3", "a-2"]


def test_a_rejected_delivery_leaves_the_outbox_for_its_record_and_the_pass_goes_on(monkeypatch):
    outbox = InMemoryOutbox(rejected_limit=1)
    for key in ("a-1", "a-2", "a-3"):
        outbox.put(key, {**ALERT, "alert_id": key})
    gone = PostResult("HTTP 410 Gone", 410, "no such hook")
    answering(monkeypatch, [PostResult("HTTP 400 Bad Request", 400), gone, OK])
    pending = []
    sender = OutboxSender("http://hooks.example/a", outbox, on_pending=pending.append)
    assert sender.run_once() == 3 and pending == [0]  # the receiver is there: no pause
    (record,) = outbox.rejected()  # bounded: the newest only
    assert (record.key, record.payload, record.status, record.answer) == (
        "a-2",
        {**ALERT, "alert_id": "a-2"},
        410,
        "no such hook",
    )
    assert abs(record.at - time.time()) < 5


def test_a_rejected_delivery_resent_after_the_fix_goes_out_from_its_first_attempt(monkeypatch):
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    outbox.put("a-1", ALERT)
    clock.now = 100.0  # the receiver's token was rotated; the fix takes a while
    calls = answering(monkeypatch, [PostResult("HTTP 401 Unauthorized", 401, "bad token"), OK])
    attempts: list[int] = []
    sender = OutboxSender(
        "http://hooks.example/a", outbox, on_attempt=lambda _p, _r, n: attempts.append(n)
    )
    assert sender.run_once() == 1 and outbox.pending() == 0
    assert outbox.requeue_rejected().requeued == ["a-1"]
    assert sender.run_once() == 1  # due now: no clock moves
    assert calls == [("a-1", ALERT), ("a-1", ALERT)] and attempts == [1, 1]
    assert outbox.pending() == 0 and outbox.rejected() == []


def test_the_sender_reports_an_unreadable_outbox_as_unknown_pending():
    class Unreachable(InMemoryOutbox):
        def claim(self, owner, limit, lease_s):
            raise ConnectionError("Redis is away")

    seen = threading.Event()
    pending: list[int | None] = []
    sender = OutboxSender(
        "http://hooks.example/a",
        Unreachable(),
        poll_s=0.01,
        on_pending=lambda n: (pending.append(n), seen.set()),
    )
    sender.start()
    assert seen.wait(2)
    sender.close()
    assert pending[0] is None


def test_a_close_that_times_out_leaves_one_sender_thread_after_a_restart(status_server):
    server = status_server(delay_s=0.6)  # holds each POST for a while
    outbox = InMemoryOutbox()
    outbox.put("a-1", ALERT)
    sender = OutboxSender(server.url, outbox, name="slow", poll_s=0.01)
    sender.start()
    while not server.requests:
        time.sleep(0.01)
    assert sender.close(timeout_s=0.05) is False  # still posting a-1
    sender.start()
    time.sleep(1.0)  # a-1 answered: the first thread is done
    threads = [t for t in threading.enumerate() if t.name == "slow-webhook-outbox"]
    assert len(threads) == 1
    assert sender.close() is True and outbox.pending() == 0
    assert len(server.requests) == 1


def test_a_claim_hides_a_delivery_from_other_senders_until_its_lease_ends():
    clock = FakeClock()
    outbox = InMemoryOutbox(clock=clock)
    outbox.put("a-1", ALERT)
    (entry,) = outbox.claim("first", 10, lease_s=30)
    assert (entry.key, entry.attempt) == ("a-1", 1)
    assert outbox.claim("second", 10, lease_s=30) == []
    outbox.retry_later("a-1", "second", 0)  # not second's claim: nothing changes
    assert outbox.claim("second", 10, lease_s=30) == []
    clock.now = 30  # the holder died: its lease ends
    assert [(e.key, e.attempt) for e in outbox.claim("second", 10, lease_s=30)] == [("a-1", 2)]


def test_a_full_in_memory_outbox_drops_the_oldest():
    outbox = InMemoryOutbox(limit=2)
    assert outbox.put("a-1", ALERT) == [] and outbox.put("a-2", ALERT) == []
    assert outbox.put("a-1", ALERT) == []  # already queued: kept once
    assert outbox.put("a-3", ALERT) == ["a-1"]
    assert [e.key for e in outbox.claim("me", 10, lease_s=30)] == ["a-2", "a-3"]


def test_the_payload_travels_as_json_with_its_idempotency_key(raw_server):
    seen: list[tuple[bytes, bytes]] = []

    def record(conn: socket.socket) -> None:
        with conn:
            seen.append(read_request(conn))
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    result = post_json(
        raw_server(record), ALERT, timeout_s=2, user_agent="t", headers={IDEMPOTENCY_HEADER: "k"}
    )
    assert result.ok
    ((head, body),) = seen
    assert b"Idempotency-Key: k" in head and json.loads(body) == ALERT
