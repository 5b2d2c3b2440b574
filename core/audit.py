"""Audit trail of admin actions: who, what, when, as a structured log line and a stored record.

Admin endpoints hold one bearer token, so `who` is "admin" unless a caller names the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

AUDIT_LOG = "audit"
ADMIN = "admin"
logger = logging.getLogger("threefold.audit")


def audit(
    action: str,
    *,
    store: Callable[[dict[str, Any]], object] | None = None,
    who: str = ADMIN,
    **details: Any,
) -> dict[str, Any]:
    """Log `{ts, who, action, **details}` on "threefold.audit" and pass it to `store`."""
    record = {"ts": round(time.time(), 3), "who": who, "action": action, **details}
    logger.info("audit %s", action, extra={"fields": record})
    if store is not None:
        store(record)
    return record
