"""Human handoff: POST the transcript and top candidates to a webhook, off the request path."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)


class HandoffNotifier:
    """Sends handoff payloads to `webhook_url` in a small thread pool.

    A failing webhook (refused, timeout, non-2xx) is logged and counted through `on_result`,
    never raised: the chat answer does not wait for or depend on it. Without a URL, handoffs
    are only logged.
    """

    def __init__(
        self,
        webhook_url: str | None,
        *,
        timeout_s: float = 3.0,
        on_result: Callable[[bool], None] | None = None,
        max_workers: int = 2,
    ) -> None:
        self.webhook_url = webhook_url
        self.timeout_s = timeout_s
        self.on_result = on_result
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="qa-handoff")

    def notify(self, payload: dict[str, Any]) -> Future[bool] | None:
        """Queue the POST; returns its future (True when delivered), or None without a webhook."""
        if not self.webhook_url:
            logger.info("handoff for session %s (no webhook configured)", payload.get("session_id"))
            return None
        return self._pool.submit(self._post, payload)

    def _post(self, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url or "",
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "threefold-qa/handoff"},
            method="POST",
        )
        ok = False
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                ok = 200 <= response.status < 300
                if not ok:
                    logger.warning("handoff webhook answered HTTP %d", response.status)
        except urllib.error.HTTPError as exc:
            logger.warning("handoff webhook answered HTTP %d: %s", exc.code, exc.reason)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.warning("handoff webhook failed (%s): %s", type(exc).__name__, exc)
        if ok:
            logger.info("handoff for session %s delivered", payload.get("session_id"))
        if self.on_result is not None:
            self.on_result(ok)
        return ok

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)
