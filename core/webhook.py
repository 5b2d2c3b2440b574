"""POST JSON payloads to a webhook off the caller's path: best effort or at least once.

`WebhookSender` queues payloads in memory and tries each a few times from a background
thread (a payload that still fails is logged and reported, never raised; a restart loses
what is queued). `OutboxSender` delivers from a durable `WebhookOutbox` instead: each
delivery is retried with capped exponential backoff until the receiver answers 2xx, carries
an `Idempotency-Key` header so the receiver can drop the duplicates at-least-once implies,
and is resumed by the next process after a crash or restart.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)
_STOP = object()
IDEMPOTENCY_HEADER = "Idempotency-Key"
LEASE_MARGIN_S = 10.0  # a claim outlives the longest attempt by this much

OnResult = Callable[[dict[str, Any], str | None], None]
"""Called once per payload with None when delivered or the last error when it failed."""

OnAttempt = Callable[[dict[str, Any], str | None, int], None]
"""Called after every attempt: (payload, None when delivered or the error, attempt from 1)."""


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
) -> str | None:
    """One POST of `payload` as JSON; None on a 2xx answer, else what went wrong."""
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    sent = {"Content-Type": "application/json", "User-Agent": user_agent, **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


class WebhookSender:
    """Delivers JSON payloads to `url` in order, one background thread, without blocking.

    Best effort: the queue is in memory, so payloads queued when the process stops are lost
    (use `OutboxSender` when deliveries must survive a restart).

    Args:
        name: what the webhook is for, in log lines and the thread name ("handoff", "alerts").
        id_field: the payload field that identifies it in log lines.
        attempts: tries per payload; the wait after try i is backoff_s * 2**(i-1).
        on_result: metrics hook, see `OnResult`.
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
    ) -> None:
        self.url = url
        self.name = name
        self.id_field = id_field
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.user_agent = user_agent
        self.on_result = on_result
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    def send(self, payload: dict[str, Any]) -> None:
        """Queue `payload` for delivery; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name=f"{self.name}-webhook", daemon=True
            )
            self._thread.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._finished(payload, "webhook queue full", attempts=0)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to timeout_s), then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    def deliver(self, payload: dict[str, Any]) -> str | None:
        """One delivery with retries, in the calling thread; None on success or the last error."""
        error = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(retry_delay(attempt, self.backoff_s))
            error = post_json(
                self.url, payload, timeout_s=self.timeout_s, user_agent=self.user_agent
            )
            if error is None:
                return None
        return error

    def _work(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is _STOP:
                return
            self._finished(payload, self.deliver(payload), attempts=self.attempts)

    def _finished(self, payload: dict[str, Any], error: str | None, *, attempts: int) -> None:
        if error is None:
            logger.info(
                "%s webhook delivered: %s=%s", self.name, self.id_field, payload.get(self.id_field)
            )
        else:
            logger.warning(
                "%s webhook failed: %s=%s attempts=%d error=%s",
                self.name,
                self.id_field,
                payload.get(self.id_field),
                attempts,
                error,
            )
        if self.on_result is not None:
            self.on_result(payload, error)


@dataclass(frozen=True)
class OutboxEntry:
    """A delivery claimed from an outbox: its key (sent as the Idempotency-Key), its payload
    and which attempt this is (1 = the first)."""

    key: str
    payload: dict[str, Any]
    attempt: int


class WebhookOutbox(Protocol):
    """A queue of webhook deliveries that several senders (processes) share.

    A claimed delivery is hidden from the other senders for its lease (a visibility timeout),
    so two senders do not post it at once; if its holder dies, it comes due again when the
    lease ends. It leaves the outbox only through `delivered`.
    """

    def claim(self, owner: str, limit: int, lease_s: float) -> list[OutboxEntry]:
        """Up to `limit` due deliveries, oldest due first, held by `owner` for `lease_s`."""
        ...

    def delivered(self, key: str) -> None:
        """Remove a delivery its receiver answered with a 2xx."""
        ...

    def retry_later(self, key: str, owner: str, delay_s: float) -> None:
        """Make `owner`'s claimed delivery due again in `delay_s` (kept as it is when another
        owner holds it now)."""
        ...

    def pending(self) -> int:
        """Deliveries waiting, claimed ones included."""
        ...


class InMemoryOutbox:
    """A process-local `WebhookOutbox` bounded to `limit` deliveries: lost when the process
    exits, shared only by the senders of this process."""

    def __init__(self, limit: int = 10_000, *, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [payload, due time, attempts so far, holder]; insertion order = age
        self._entries: dict[str, list[Any]] = {}

    def put(self, key: str, payload: dict[str, Any]) -> list[str]:
        """Queue a delivery (a key already queued is kept once); returns the keys of the
        oldest deliveries dropped to stay within `limit`."""
        with self._lock:
            if key in self._entries:
                return []
            dropped = []
            while len(self._entries) >= self.limit:
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

    def retry_later(self, key: str, owner: str, delay_s: float) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[3] == owner:
                entry[1], entry[3] = self._clock() + delay_s, ""

    def pending(self) -> int:
        with self._lock:
            return len(self._entries)


class OutboxSender:
    """Delivers a `WebhookOutbox` to `url` at least once, from one background thread.

    Each delivery is claimed under a lease, POSTed with an `Idempotency-Key` header (its key),
    removed after a 2xx answer and otherwise retried after `retry_delay` (backoff_s doubling
    up to max_backoff_s), however long the receiver is away: only the outbox's own bound drops
    deliveries. Several processes may share the outbox; a restarted one resumes what is left.

    Args:
        name: what the webhook is for, in log lines and the thread name ("alerts").
        id_field: the payload field that identifies it in log lines.
        poll_s: how often the outbox is checked for deliveries that came due (`wake` checks
            at once, e.g. after queueing one).
        on_attempt: metrics hook, see `OnAttempt`.
        on_pending: called with the outbox's size after each pass.
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
        on_pending: Callable[[int], None] | None = None,
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (once): it first delivers what the outbox already holds."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._work, name=f"{self.name}-webhook-outbox", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Check the outbox now (something was queued); starts the thread if needed."""
        self.start()
        self._wake.set()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after the attempt in progress; what is left stays in the outbox for the next
        sender (this one's or another process's)."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout_s)
            self._thread = None

    def run_once(self) -> int:
        """Attempt the deliveries due now, in the calling thread, until one fails (the receiver
        is likely away: the others wait for the next pass); returns how many were tried."""
        tried = 0
        while not self._stop.is_set():
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
        """POST one claimed delivery; True when the receiver took it."""
        error = post_json(
            self.url,
            entry.payload,
            timeout_s=self.timeout_s,
            user_agent=self.user_agent,
            headers={IDEMPOTENCY_HEADER: entry.key},
        )
        ident = entry.payload.get(self.id_field, entry.key)
        fields = {
            "event": "webhook_delivered" if error is None else "webhook_failed",
            "webhook": self.name,
            self.id_field: ident,
            "attempt": entry.attempt,
        }
        if error is None:
            self.outbox.delivered(entry.key)
            logger.info(
                "%s webhook delivered: %s=%s attempt=%d",
                self.name,
                self.id_field,
                ident,
                entry.attempt,
                extra={"fields": fields},
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
                error,
                delay,
                extra={"fields": {**fields, "error": error, "retry_in_s": delay}},
            )
        if self.on_attempt is not None:
            self.on_attempt(entry.payload, error, entry.attempt)
        return error is None

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception as exc:  # e.g. Redis away: the deliveries wait in the outbox
                logger.warning(
                    "%s webhook outbox unavailable (%r); trying again in %.1f s",
                    self.name,
                    exc,
                    self.poll_s,
                    extra={"fields": {"event": "webhook_outbox_error", "webhook": self.name}},
                )
            self._wake.wait(self.poll_s)
