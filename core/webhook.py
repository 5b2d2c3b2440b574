"""POST JSON payloads to a webhook from a background thread, with bounded retries and backoff.

`send` only queues, so the caller (a request handler, a Kafka consumer) never waits for the
webhook; a payload that still fails after its retries is logged and reported, never raised.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
_STOP = object()

OnResult = Callable[[dict[str, Any], str | None], None]
"""Called once per payload with None when delivered or the last error when it failed."""


class WebhookSender:
    """Delivers JSON payloads to `url` in order, one background thread, without blocking.

    Args:
        name: what the webhook is for, in log lines and the thread name ("handoff", "alerts").
        id_field: the payload field that identifies it in log lines.
        attempts: tries per payload; the wait after try i is backoff_s * 2**i.
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
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent}
        error = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return None
                    error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
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
