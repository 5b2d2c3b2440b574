"""The dashboard page, its static files and `/healthz`."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from threefold.apps.alerts.resources import REDIS_FIX, current_resources
from threefold.apps.alerts.web.api import redis_status
from threefold.apps.alerts.web.consumer_health import assess_consumers
from threefold.core.redis_breaker import breaker_for

STATIC = Path(__file__).resolve().parent.parent / "static"
UNAVAILABLE = "the dashboard's charts, alerts and live feed answer 503 until it is back"
PROBLEM = {"unreachable": "does not answer", "refusing": "answers with an error"}
FIX = {
    "unreachable": "check that it is running and that REDIS_URL points at it",
    "refusing": "see its log; a refused login: check REDIS_USERNAME and REDIS_PASSWORD",
}

pages = Blueprint("alerts_pages", __name__)


@pages.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@pages.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(STATIC, name)


@pages.get("/healthz")
def healthz() -> tuple[dict, int]:
    """200 when the consumer's Redis answers and an alerts consumer runs (a fresh heartbeat
    says so); else 503 "degraded" with the reason: Redis down or not configured (status,
    redis, reason: the other apps' shape), or no consumer running (`alerts_consumer` says what
    instead). With Redis answering, `consumers` lists each consumer's heartbeat in short.

    Redis is read through its client's breaker: while it is open (Redis did not answer a moment
    ago) the 503 comes at once, without a wait for the socket timeout."""
    resources = current_resources()
    store = resources.store
    if store is None:
        reason = f"REDIS_URL is not set: {UNAVAILABLE}. Fix: {REDIS_FIX}"
        return {"status": "degraded", "redis": "not configured", "reason": reason}, 503
    client = getattr(store, "client", None)
    through_breaker = nullcontext() if client is None else breaker_for(client).attempt("healthz")
    try:
        with through_breaker:
            beats = store.heartbeats()
    except Exception as exc:  # any failure is reported as degraded, never a 500
        status = redis_status(exc)
        reason = (
            f"the consumer's Redis at {_where(store)} {PROBLEM[status]} "
            f"({type(exc).__name__}: {exc}): {UNAVAILABLE}. Fix: {FIX[status]}"
        )
        return {"status": "degraded", "redis": status, "reason": reason}, 503
    key = f"{resources.settings.redis_prefix}consumers"
    limit = resources.settings.publish_failing_limit_s
    health = assess_consumers(beats, time.time(), key, publish_failing_limit_s=limit)
    body = {"status": "ok", "redis": "ok", "alerts_consumer": health.state}
    if not health.ok:
        body.update(status="degraded", reason=health.reason)
    body["consumers"] = health.consumers
    return body, 200 if health.ok else 503


def _where(store: object) -> str:
    """host:port (or the socket path) of the store's Redis, without credentials."""
    pool = getattr(getattr(store, "client", None), "connection_pool", None)
    options = getattr(pool, "connection_kwargs", {})
    if options.get("path"):
        return str(options["path"])
    return f"{options.get('host', '?')}:{options.get('port', '?')}"
