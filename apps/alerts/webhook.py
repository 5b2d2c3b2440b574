"""Optional webhook for alerts: POSTed from a background thread; failures are logged only.

The alert is already on the alerts topic when the webhook is called, so a failing webhook
never loses it.
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

logger = logging.getLogger(__name__)
_STOP = object()


class WebhookNotifier:
    """POSTs each alert as JSON to `url`, retrying with backoff, without blocking the consumer."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        on_failure: Callable[[dict, str], None] | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.on_failure = on_failure
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None

    def notify(self, alert: dict) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="alerts-webhook", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._failed(alert, "webhook queue full")

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to timeout_s), then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    def deliver(self, alert: dict) -> str | None:
        """One delivery with retries; returns None on success or the last error."""
        body = json.dumps(alert).encode("utf-8")
        error = None
        for attempt in range(self.attempts):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return None
                    error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            time.sleep(self.backoff_s * (2**attempt))
        return error

    def _work(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is _STOP:
                return
            error = self.deliver(alert)
            if error is not None:
                self._failed(alert, error)

    def _failed(self, alert: dict, error: str) -> None:
        logger.warning(
            "webhook delivery of alert %s failed (%s); it is on the alerts topic",
            alert.get("alert_id"),
            error,
        )
        if self.on_failure is not None:
            self.on_failure(alert, error)
