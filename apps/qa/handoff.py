"""Human handoff: POST the transcript and top candidates to a webhook, off the request path.

Each handoff is tried up to 3 times (a timeout, a refused connection, a 5xx, 408/409/425/429),
every attempt with the same `Idempotency-Key` header, `handoff-<session_id>-<ts>` (`handoff_key`):
a receiver slower than the timeout gets the retries of a handoff it already took, and drops them
by that key. A later handoff of the same session has another `ts`, so another key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from threefold.core.webhook import WebhookSender

logger = logging.getLogger(__name__)


class HandoffNotifier:
    """Sends handoff payloads through a `WebhookSender`; without a URL, handoffs are only logged.

    A failing webhook (refused, timeout, non-2xx) is logged and counted through `on_result`
    (True when delivered), never raised: the chat answer does not wait for or depend on it.
    Attempts carry `handoff_key(payload)` as their `Idempotency-Key`.
    """

    def __init__(
        self,
        webhook_url: str | None,
        *,
        timeout_s: float = 3.0,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self._sender = None
        if webhook_url:
            self._sender = WebhookSender(
                webhook_url,
                name="handoff",
                id_field="session_id",
                timeout_s=timeout_s,
                user_agent="threefold-qa/handoff",
                on_result=None if on_result is None else lambda _p, error: on_result(error is None),
                idempotency_key=handoff_key,
            )

    @property
    def configured(self) -> bool:
        """True when a webhook URL is set (handoffs reach an external helpdesk)."""
        return self._sender is not None

    def notify(self, payload: dict[str, Any]) -> None:
        """Queue the POST; returns at once."""
        if self._sender is None:
            logger.info("handoff for session %s (no webhook configured)", payload.get("session_id"))
            return
        self._sender.send(payload)


def handoff_key(payload: dict[str, Any]) -> str:
    """The handoff's `Idempotency-Key`: its session and time, the same for each attempt."""
    return f"handoff-{payload['session_id']}-{payload['ts']}"
