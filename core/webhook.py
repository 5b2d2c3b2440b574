"""POST JSON payloads to a webhook off the caller's path: best effort or at least once.

`WebhookSender` queues payloads in memory and tries each a few times from a background
thread (a payload that still fails is logged and reported, never raised; a restart loses
what is queued). `OutboxSender` delivers from a durable `WebhookOutbox` instead: each
delivery is retried with capped exponential backoff until the receiver answers 2xx, carries
an `Idempotency-Key` header so the receiver can drop the duplicates at-least-once implies,
and is resumed by the next process after a crash or restart.

Both classify the receiver's answers alike (`post_json`): 2xx is delivered; a 4xx that
retrying cannot fix (`PostResult.rejected`: 400, 401, 403, 404, 410, 413, 422...) is given up
at once; anything else (5xx, 408, 409, 425, 429, a redirect, a timeout, a refused connection,
a garbled answer) is a failed attempt, retried. Redirects are not followed: urllib would turn
the POST into a GET without its body and count the GET's 200 as delivered.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from threefold.core.bounded_call import call_within

logger = logging.getLogger(__name__)
_STOP = object()
IDEMPOTENCY_HEADER = "Idempotency-Key"
LEASE_MARGIN_S = 10.0  # a claim outlives the longest attempt (timeout_s in all) by more than this
RETRYABLE_4XX = frozenset({408, 409, 425, 429})  # timeout, conflict, too early, too many requests
ANSWER_SNIPPET_CHARS = 200  # how much of a failed answer's body is kept for log lines
REJECTED_LIMIT = 1_000  # rejected deliveries an outbox keeps a record of, newest first
# What urllib and http.client pass as the timeout when the caller gave none.
_NO_TIMEOUT_GIVEN: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]

OnResult = Callable[[dict[str, Any], str | None], None]
"""Called once per payload with None when delivered or the last error when it failed."""


@dataclass(frozen=True)
class PostResult:
    """What one POST came to: `error` is None when the receiver answered 2xx."""

    error: str | None = None
    status: int | None = None  # the HTTP status, when the receiver answered one
    answer: str = ""  # the start of a non-2xx answer's body

    @property
    def ok(self) -> bool:
        """The receiver took the payload (2xx)."""
        return self.error is None

    @property
    def rejected(self) -> bool:
        """The receiver refused the payload for good: a 4xx other than 408, 409, 425 and 429,
        which the same request would get again however often it is retried."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in RETRYABLE_4XX
        )


OnAttempt = Callable[[dict[str, Any], PostResult, int], None]
"""Called after every attempt: (payload, its `PostResult`, attempt from 1)."""


def retry_delay(attempt: int, base_s: float, cap_s: float = float("inf")) -> float:
    """Seconds to wait after failed attempt `attempt` (from 1): base_s * 2**(attempt-1), capped."""
    return min(cap_s, base_s * 2 ** max(attempt - 1, 0))


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    user_agent: str,
    headers: dict[str, str] | None = None,
) -> PostResult:
    """One POST of `payload` as JSON, never raising for what the network or receiver does.

    The whole attempt gets `timeout_s` in all: name resolution, connecting (each address of
    the host with the time left), a proxy tunnel, the TLS handshake, sending, and the status
    line, headers and body of the answer. A step still running when the time is up is cut
    (a receiver that trickles its answer has its connection shut). A redirect is not followed
    but reported as a failure naming where it points.
    """
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    sent = {"Content-Type": "application/json", "User-Agent": user_agent, **(headers or {})}
    with _Deadline(timeout_s) as deadline:
        opener = urllib.request.build_opener(
            _RefuseRedirects, _HTTPHandler(deadline), _HTTPSHandler(deadline)
        )
        try:
            request = urllib.request.Request(url, data=body, headers=sent, method="POST")
            with opener.open(request, timeout=timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return _http_error(exc)
        except (http.client.HTTPException, OSError, ValueError) as exc:
            if deadline.expired:
                return PostResult(f"timed out: no complete answer within {timeout_s:g} s")
            return PostResult(" ".join(f"{type(exc).__name__}: {exc}".split()))
    if deadline.cut_off:  # mid-headers, which http.client takes for their end
        return PostResult(f"timed out: no complete answer within {timeout_s:g} s", status)
    return PostResult() if 200 <= status < 300 else PostResult(f"HTTP {status}", status)


def _http_error(exc: urllib.error.HTTPError) -> PostResult:
    """The `PostResult` of a non-2xx answer, with the start of its body."""
    try:
        raw = exc.read(ANSWER_SNIPPET_CHARS * 4) or b""
    except (http.client.HTTPException, OSError, ValueError):
        raw = b""
    answer = " ".join(raw.decode("utf-8", "replace").split())[:ANSWER_SNIPPET_CHARS]
    error = f"HTTP {exc.code} {exc.reason}"
    if 300 <= exc.code < 400:
        location = _shown_url(exc.headers.get("Location", "")) or "(no Location header)"
        error += (
            f": the receiver redirected to {location}; redirects are not followed (the POST "
            "would become a GET without its body): configure the final URL"
        )
    return PostResult(error, exc.code, answer)


def _shown_url(url: str) -> str:
    """`url` without its query, fragment and user info, which may carry a token."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(a Location that is not a URL)"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")
    )


class _Deadline:
    """One POST's time limit: shuts the sockets it watches when the time is up, so no read
    or write outlives it (a socket timeout only bounds each read, and a trickling receiver
    never trips it), and tells the steps before a socket exists how much time is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self.cut_off = False  # the time ran out and every socket watched was shut
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:  # not while `_expire` shuts them: a closed descriptor is reused
            for sock in self._sockets:  # duplicates of the connection's socket: see `watch`
                sock.close()
            self._sockets.clear()

    @property
    def expired(self) -> bool:
        """The time is up (the sockets may not be shut yet)."""
        return self.cut_off or self.remaining() <= 0

    def remaining(self) -> float:
        """Seconds left (0 once the time is up)."""
        return max(0.0, self._ends - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Shut the connection of `sock` when the time is up (at once if it is already).

        A duplicate of `sock` is kept, not `sock` itself: `ssl.wrap_socket` detaches the
        socket object it wraps, while a duplicate's shutdown still ends the one connection
        both refer to, so the TLS handshake and everything after it are cut alike."""
        watched = sock.dup()
        with self._lock:
            self._sockets.append(watched)
            if self.cut_off:
                _shut(watched)

    def _expire(self) -> None:
        with self._lock:
            self.cut_off = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple[Any, ...]]:
    """`socket.getaddrinfo(host, port)` for TCP, waiting for at most the time `deadline` has
    left: the lookup runs on a daemon thread, since getaddrinfo itself cannot be interrupted
    (a thread left behind ends with the system resolver's own timeout)."""
    try:
        return call_within(
            lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM),
            timeout_s=deadline.remaining(),
            name="webhook-resolve",
        )
    except TimeoutError:
        raise TimeoutError(f"resolving {host!r} took over {deadline.seconds:g} s") from None


class _Watched:
    """An HTTP(S) connection whose every step a `_Deadline` bounds: name resolution and each
    address's connect get the time left, and the socket is watched from before the proxy
    tunnel and the TLS handshake on."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        self._create_connection = self._connect_within_deadline

    def _connect_within_deadline(
        self,
        address: tuple[str, int],
        timeout: Any = _NO_TIMEOUT_GIVEN,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """`socket.create_connection` with the deadline's time left as the limit of each
        step; the socket keeps `timeout` for its reads and writes afterwards."""
        deadline = self._deadline
        host, port = address
        per_step = socket.getdefaulttimeout() if timeout is _NO_TIMEOUT_GIVEN else timeout
        error: OSError = OSError(f"{host!r} resolves to no address")
        for family, kind, proto, _, sockaddr in _resolve(host, port, deadline):
            left = deadline.remaining()
            if left <= 0:
                raise TimeoutError(f"connecting to {host!r} took over {deadline.seconds:g} s")
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(left if per_step is None else min(left, per_step))
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                sock.settimeout(per_step)
                deadline.watch(sock)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise error


class _WatchedHTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


class _DeadlineOpen:
    """Opens urllib's connections as `_Watched` ones, keeping its proxy and TLS handling."""

    def __init__(self, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deadline = deadline

    def do_open(self, http_class: type, req: urllib.request.Request, **kwargs: Any) -> Any:
        https = issubclass(http_class, http.client.HTTPSConnection)
        watched = _WatchedHTTPSConnection if https else _WatchedHTTPConnection
        return super().do_open(watched, req, deadline=self._deadline, **kwargs)  # type: ignore[misc]


class _HTTPHandler(_DeadlineOpen, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_DeadlineOpen, urllib.request.HTTPSHandler):
    pass


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Leaves a 3xx as the answer (an `HTTPError`) instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    """Delivers JSON payloads to `url` in order, one background thread, without blocking.

    Best effort: the queue is in memory, so payloads queued when the process stops are lost
    (use `OutboxSender` when deliveries must survive a restart). A payload the receiver
    rejects for good (`PostResult.rejected`) is not tried again; nothing one payload does
    stops the thread from delivering the next. Every attempt of one payload carries the same
    `Idempotency-Key` header: a receiver that took an attempt but answered too late (or whose
    answer was lost) drops the retries that follow.

    Args:
        name: what the webhook is for, in log lines and the thread name ("handoff", "alerts").
        id_field: the payload field that identifies it in log lines.
        timeout_s: each attempt's limit, in all (see `post_json`).
        attempts: tries per payload; the wait after try i is backoff_s * 2**(i-1).
        on_result: metrics hook, see `OnResult`.
        idempotency_key: the payload's `Idempotency-Key` (say, from its id and time, so that
            the same event queued twice is dropped too); a random one per payload when None.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        id_field: str = "id",
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_queue: int = 10_000,
        user_agent: str = "threefold",
        on_result: OnResult | None = None,
        idempotency_key: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.id_field = id_field
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.user_agent = user_agent
        self.on_result = on_result
        self.idempotency_key = idempotency_key
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    def send(self, payload: dict[str, Any]) -> None:
        """Queue `payload` for delivery; returns at once."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._work, name=f"{self.name}-webhook", daemon=True
            )
            self._thread.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._finished(payload, PostResult("webhook queue full"), attempts=0)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to timeout_s), then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._thread = None

    def deliver(self, payload: dict[str, Any]) -> str | None:
        """One delivery with retries, in the calling thread; None on success or the last error."""
        return self._deliver(payload)[0].error

    def _deliver(self, payload: dict[str, Any]) -> tuple[PostResult, int]:
        """(the last attempt's result, attempts made); stops early on a 2xx or a rejection."""
        key = uuid.uuid4().hex if self.idempotency_key is None else self.idempotency_key(payload)
        result = PostResult("not attempted")
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(retry_delay(attempt - 1, self.backoff_s))
            result = post_json(
                self.url,
                payload,
                timeout_s=self.timeout_s,
                user_agent=self.user_agent,
                headers={IDEMPOTENCY_HEADER: key},
            )
            if result.ok or result.rejected:
                return result, attempt
        return result, self.attempts

    def _work(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is _STOP:
                return
            try:
                result, attempts = self._deliver(payload)
                self._finished(payload, result, attempts=attempts)
            except Exception:  # a bug in a hook or a payload must not stop the next delivery
                logger.exception(
                    "%s webhook: delivering %s=%s raised; going on with the next payload",
                    self.name,
                    self.id_field,
                    payload.get(self.id_field),
                    extra={"fields": {"event": "webhook_error", "webhook": self.name}},
                )

    def _finished(self, payload: dict[str, Any], result: PostResult, *, attempts: int) -> None:
        ident = payload.get(self.id_field)
        fields = {"webhook": self.name, self.id_field: ident, "attempts": attempts}
        if result.ok:
            logger.info(
                "%s webhook delivered: %s=%s",
                self.name,
                self.id_field,
                ident,
                extra={"fields": {"event": "webhook_delivered", **fields}},
            )
        elif result.rejected:
            logger.error(
                "%s webhook rejected: %s=%s status=%d answer=%r; not retried (the receiver "
                "refuses this payload: check its URL, credentials and what it accepts)",
                self.name,
                self.id_field,
                ident,
                result.status,
                result.answer,
                extra={
                    "fields": {
                        "event": "webhook_rejected",
                        **fields,
                        "status": result.status,
                        "answer": result.answer,
                    }
                },
            )
        else:
            logger.warning(
                "%s webhook failed: %s=%s attempts=%d error=%s",
                self.name,
                self.id_field,
                ident,
                attempts,
                result.error,
                extra={"fields": {"event": "webhook_failed", **fields, "error": result.error}},
            )
        if self.on_result is not None:
            self.on_result(payload, result.error)


@dataclass(frozen=True)
class OutboxEntry:
    """A delivery claimed from an outbox: its key (sent as the Idempotency-Key), its payload
    and which attempt this is (1 = the first)."""

    key: str
    payload: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class RejectedDelivery:
    """A delivery its receiver refused for good, as the outbox recorded it."""

    key: str
    payload: dict[str, Any]
    status: int
    answer: str  # the start of the receiver's answer
    at: float  # when it was rejected, epoch seconds


@dataclass(frozen=True)
class Requeued:
    """What `WebhookOutbox.requeue_rejected` did: the keys moved back into the outbox, and
    those asked for that were not in the record of rejections."""

    requeued: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


class WebhookOutbox(Protocol):
    """A queue of webhook deliveries that several senders (processes) share.

    A claimed delivery is hidden from the other senders for its lease (a visibility timeout);
    if its holder dies, it comes due again when the lease ends. It leaves the outbox through
    `delivered` or `reject`, and a rejected one comes back through `requeue_rejected`.
    """

    def claim(self, owner: str, limit: int, lease_s: float) -> list[OutboxEntry]:
        """Up to `limit` due deliveries, oldest due first, held by `owner` for `lease_s`."""
        ...

    def delivered(self, key: str) -> None:
        """Remove a delivery its receiver answered with a 2xx."""
        ...

    def reject(self, key: str, status: int, answer: str) -> None:
        """Move a delivery its receiver refused for good (`PostResult.rejected`) out of the
        outbox into its bounded record of rejections (see `rejected`)."""
        ...

    def retry_later(self, key: str, owner: str, delay_s: float) -> None:
        """Make `owner`'s claimed delivery due again in `delay_s` (kept as it is when another
        owner holds it now)."""
        ...

    def pending(self) -> int:
        """Deliveries waiting, claimed ones included."""
        ...

    def rejected(self, limit: int = 100) -> list[RejectedDelivery]:
        """The latest rejected deliveries, newest first (at most `REJECTED_LIMIT` are kept)."""
        ...

    def requeue_rejected(self, keys: Iterable[str] | None = None) -> Requeued:
        """Move rejected deliveries (`keys`, or all of them when None, oldest rejection first)
        out of the record of rejections back into the outbox, due now, from their first
        attempt. A re-send never drops a waiting delivery (the outbox may hold more than its
        limit until the next `put` trims it). A key already back in the outbox is not queued
        twice; one the record does not hold is `not_found`."""
        ...


class InMemoryOutbox:
    """A process-local `WebhookOutbox` bounded to `limit` deliveries: lost when the process
    exits, shared only by the senders of this process."""

    def __init__(
        self,
        limit: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
        rejected_limit: int = REJECTED_LIMIT,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [payload, due time, attempts so far, holder]; insertion order = age
        self._entries: dict[str, list[Any]] = {}
        self._rejected: deque[RejectedDelivery] = deque(maxlen=rejected_limit)

    def put(self, key: str, payload: dict[str, Any]) -> list[str]:
        """Queue a delivery (a key already queued is kept once); returns the keys of the
        oldest deliveries dropped to stay within `limit`."""
        with self._lock:
            return self._queue(key, payload)

    def _queue(self, key: str, payload: dict[str, Any], *, bounded: bool = True) -> list[str]:
        """`put` (`bounded`: dropping the oldest beyond `limit`), with the lock held."""
        if key in self._entries:
            return []
        dropped = []
        while bounded and len(self._entries) >= self.limit:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            dropped.append(oldest)
        self._entries[key] = [payload, self._clock(), 0, ""]
        return dropped

    def claim(self, owner: str, limit: int, lease_s: float) -> list[OutboxEntry]:
        with self._lock:
            now = self._clock()
            due = sorted((e[1], key) for key, e in self._entries.items() if e[1] <= now)
            out = []
            for _, key in due[:limit]:
                entry = self._entries[key]
                entry[1], entry[2], entry[3] = now + lease_s, entry[2] + 1, owner
                out.append(OutboxEntry(key, entry[0], entry[2]))
            return out

    def delivered(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def reject(self, key: str, status: int, answer: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._rejected.append(RejectedDelivery(key, entry[0], status, answer, time.time()))

    def retry_later(self, key: str, owner: str, delay_s: float) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[3] == owner:
                entry[1], entry[3] = self._clock() + delay_s, ""

    def pending(self) -> int:
        with self._lock:
            return len(self._entries)

    def rejected(self, limit: int = 100) -> list[RejectedDelivery]:
        with self._lock:
            return list(reversed(self._rejected))[:limit]

    def requeue_rejected(self, keys: Iterable[str] | None = None) -> Requeued:
        with self._lock:
            latest = {r.key: r for r in self._rejected}  # oldest rejection first
            wanted = list(latest) if keys is None else list(dict.fromkeys(keys))
            done = Requeued()
            for key in wanted:
                if key not in latest:
                    done.not_found.append(key)
                    continue
                self._queue(key, latest[key].payload, bounded=False)
                done.requeued.append(key)
            moved = set(done.requeued)
            kept = [r for r in self._rejected if r.key not in moved]
            self._rejected.clear()
            self._rejected.extend(kept)
            return done


class OutboxSender:
    """Delivers a `WebhookOutbox` to `url` at least once, from one background thread.

    Each delivery is claimed under a lease, POSTed with an `Idempotency-Key` header (its key),
    removed after a 2xx answer, moved to the outbox's record of rejections after a 4xx that
    retrying cannot fix (`PostResult.rejected`), and otherwise retried after `retry_delay`
    (backoff_s doubling up to max_backoff_s), however long the receiver is away: only the
    outbox's own bound drops deliveries. Several processes may share the outbox; a restarted
    one resumes what is left.

    An attempt is abandoned after `timeout_s` in all (`post_json`), well within its lease
    (2 * timeout_s + LEASE_MARGIN_S), so two senders do not have one delivery in flight at
    once. Receivers still see a delivery twice now and then (a 2xx lost on its way back, an
    abandoned attempt they had taken) and should drop a repeated Idempotency-Key.

    Args:
        name: what the webhook is for, in log lines and the thread name ("alerts").
        id_field: the payload field that identifies it in log lines.
        timeout_s: each attempt's limit, in all.
        poll_s: how often the outbox is checked for deliveries that came due (`wake` checks
            at once, e.g. after queueing one).
        on_attempt: metrics hook, see `OnAttempt`.
        on_pending: called after each pass with the outbox's size, or with None when the
            outbox could not be read (its store is unreachable).
    """

    def __init__(
        self,
        url: str,
        outbox: WebhookOutbox,
        *,
        name: str = "webhook",
        id_field: str = "id",
        timeout_s: float = 5.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_s: float = 1.0,
        user_agent: str = "threefold",
        on_attempt: OnAttempt | None = None,
        on_pending: Callable[[int | None], None] | None = None,
    ) -> None:
        self.url = url
        self.outbox = outbox
        self.name = name
        self.id_field = id_field
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.user_agent = user_agent
        self.on_attempt = on_attempt
        self.on_pending = on_pending
        self.owner = uuid.uuid4().hex  # holds the claims of what this sender is posting
        self.lease_s = 2 * timeout_s + LEASE_MARGIN_S
        self._wake = threading.Event()
        self._stop = threading.Event()  # the running thread's; each start makes a new one
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (once): it first delivers what the outbox already holds.

        After a `close` that timed out, the old thread still ends after its attempt in
        progress; the new one runs alongside it only until then."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(self._stop,), name=f"{self.name}-webhook-outbox", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Check the outbox now (something was queued); starts the thread if needed."""
        self.start()
        self._wake.set()

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop after the attempt in progress; what is left stays in the outbox for the next
        sender (this one's or another process's). False when the thread is still finishing
        its attempt after `timeout_s` (it stops once that is over)."""
        if self._thread is None:
            return True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning(
                "%s webhook sender still busy with an attempt after %.1f s; it stops after it",
                self.name,
                timeout_s,
                extra={"fields": {"event": "webhook_close_timeout", "webhook": self.name}},
            )
            return False
        self._thread = None
        return True

    def run_once(self) -> int:
        """Attempt the deliveries due now, in the calling thread, until one fails (the receiver
        is likely away: the others wait for the next pass); returns how many were tried."""
        return self._run(self._stop)

    def _run(self, stop: threading.Event) -> int:
        tried = 0
        while not stop.is_set():
            claimed = self.outbox.claim(self.owner, 1, self.lease_s)
            if not claimed:
                break
            tried += 1
            if not self._attempt(claimed[0]):
                break
        if self.on_pending is not None:
            self.on_pending(self.outbox.pending())
        return tried

    def _attempt(self, entry: OutboxEntry) -> bool:
        """POST one claimed delivery; True when the receiver answered it for good (a 2xx or a
        rejection), False when it is to be retried."""
        result = post_json(
            self.url,
            entry.payload,
            timeout_s=self.timeout_s,
            user_agent=self.user_agent,
            headers={IDEMPOTENCY_HEADER: entry.key},
        )
        ident = entry.payload.get(self.id_field, entry.key)
        fields = {"webhook": self.name, self.id_field: ident, "attempt": entry.attempt}
        if result.ok:
            self.outbox.delivered(entry.key)
            logger.info(
                "%s webhook delivered: %s=%s attempt=%d",
                self.name,
                self.id_field,
                ident,
                entry.attempt,
                extra={"fields": {"event": "webhook_delivered", **fields}},
            )
        elif result.rejected:
            self.outbox.reject(entry.key, result.status or 0, result.answer)
            logger.error(
                "%s webhook rejected: %s=%s status=%d attempt=%d answer=%r; removed from the "
                "outbox into its record of rejected deliveries, not retried. Fix the receiver "
                "(URL, credentials, what it accepts), then re-send it from that record",
                self.name,
                self.id_field,
                ident,
                result.status,
                entry.attempt,
                result.answer,
                extra={
                    "fields": {
                        "event": "webhook_rejected",
                        **fields,
                        "status": result.status,
                        "answer": result.answer,
                    }
                },
            )
        else:
            delay = retry_delay(entry.attempt, self.backoff_s, self.max_backoff_s)
            self.outbox.retry_later(entry.key, self.owner, delay)
            logger.warning(
                "%s webhook failed: %s=%s attempt=%d error=%s; retrying in %.1f s",
                self.name,
                self.id_field,
                ident,
                entry.attempt,
                result.error,
                delay,
                extra={
                    "fields": {
                        "event": "webhook_failed",
                        **fields,
                        "status": result.status,
                        "error": result.error,
                        "retry_in_s": delay,
                    }
                },
            )
        if self.on_attempt is not None:
            self.on_attempt(entry.payload, result, entry.attempt)
        return result.ok or result.rejected

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                self._run(stop)
            except Exception as exc:  # e.g. Redis away: the deliveries wait in the outbox
                logger.warning(
                    "%s webhook outbox unavailable (%r); trying again in %.1f s",
                    self.name,
                    exc,
                    self.poll_s,
                    extra={"fields": {"event": "webhook_outbox_error", "webhook": self.name}},
                )
                if self.on_pending is not None:
                    self.on_pending(None)
            self._wake.wait(self.poll_s)
