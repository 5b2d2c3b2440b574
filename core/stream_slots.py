"""Bounded server-sent-event streams, so long-lived streams never hold every server thread.

A stream holds one server thread for as long as it is open (gunicorn's gthread worker has
GUNICORN_THREADS of them per process). `StreamSlots` caps the streams a process serves at once,
in all and per client, and answers 503 + Retry-After (JSON) when full; the app gives each stream
a maximum life too, after which the browser's EventSource reconnects and resumes.

    slots = StreamSlots(worker_stream_slots(server_threads(os.environ)), per_client=2)
    return slots.open(events(), client=client_key())  # in the view
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from flask import Response

from threefold.core.web import ApiError

logger = logging.getLogger(__name__)
RESERVED_THREADS = 2  # per worker, always left to the other requests
DEFAULT_THREADS = 8  # gunicorn's GUNICORN_THREADS default (deploy/gunicorn.conf.py)
FULL_RETRY_AFTER_S = 30
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def worker_stream_slots(threads: int = DEFAULT_THREADS, reserved: int = RESERVED_THREADS) -> int:
    """Streams one worker may serve at once: its threads less `reserved`, but one while it has
    two threads or more (a stream, and a thread for everything else); 0 with one thread, said
    in a warning (live updates are off: pages refresh instead)."""
    slots = max(threads - reserved, 1 if threads > 1 else 0)
    if slots == 0:
        logger.warning(
            "GUNICORN_THREADS=%d leaves no thread for live streams: live updates are off and "
            "pages refresh instead. Fix: GUNICORN_THREADS=4 or more",
            threads,
        )
    return slots


def server_threads(environ: Mapping[str, str]) -> int:
    """The threads per worker that gunicorn runs with: GUNICORN_THREADS (deploy/gunicorn.conf.py
    refuses a value that is not a whole number >= 1, so only its default stands in for one)."""
    raw = environ.get("GUNICORN_THREADS", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) >= 1 else DEFAULT_THREADS


class StreamSlots:
    """Counts the open streams of this process, in all and per client (thread-safe)."""

    def __init__(self, total: int, *, per_client: int, what: str = "live feeds") -> None:
        if total < 0 or per_client < 1:
            raise ValueError(
                f"total must be >= 0 and per_client >= 1, found {total!r} and {per_client!r}"
            )
        self.total = total
        self.per_client = per_client
        self.what = what
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def in_use(self) -> int:
        """Streams open now."""
        with self._lock:
            return sum(self._open.values())

    def _acquire(self, client: str) -> None:
        with self._lock:
            if sum(self._open.values()) >= self.total:
                reason = f"this server already serves {self.total} {self.what}, its limit"
            elif self._open.get(client, 0) >= self.per_client:
                reason = f"this client already has {self.per_client} {self.what} open, its limit"
            else:
                self._open[client] = self._open.get(client, 0) + 1
                return
        raise ApiError(
            503,
            f"{reason}; close one (another tab) or retry in {FULL_RETRY_AFTER_S} s. "
            "The rest of the API answers as usual",
            code="streams_full",
            retry_after=FULL_RETRY_AFTER_S,
        )

    def open(self, events: Iterable[str], *, client: str) -> Response:
        """A `text/event-stream` response of `events` holding one slot until it is closed;
        a 503 ApiError (Retry-After) when this process or this client has no slot left.

        The slot is freed when the server closes the response (the stream ended, the client
        went away, or a HEAD request that never read the body), not when the generator ends:
        a generator closed before it started never runs its `finally`.
        """
        self._acquire(client)
        held = [True]

        def release() -> None:
            with self._lock:
                if not held[0]:
                    return
                held[0] = False
            self._release(client)

        response = Response(events, mimetype="text/event-stream", headers=SSE_HEADERS)
        response.call_on_close(release)
        return response

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """Hold one of `client`'s slots for the block (a long poll, which holds a server thread
        as a stream does); a 503 ApiError (Retry-After) when none is left."""
        self._acquire(client)
        try:
            yield
        finally:
            self._release(client)

    def _release(self, client: str) -> None:
        with self._lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)
