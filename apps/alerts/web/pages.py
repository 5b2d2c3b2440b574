"""The dashboard page, its static files and `/healthz`."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from threefold.apps.alerts.resources import REDIS_FIX, current_resources
from threefold.apps.alerts.web.api import redis_status

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
    """200 when the consumer's Redis answers; 503 "degraded" with the reason otherwise (the
    same shape as the other apps': status, redis, reason)."""
    store = current_resources().store
    if store is None:
        reason = f"REDIS_URL is not set: {UNAVAILABLE}. Fix: {REDIS_FIX}"
        return {"status": "degraded", "redis": "not configured", "reason": reason}, 503
    try:
        store.watermark()
    except Exception as exc:  # any failure is reported as degraded, never a 500
        status = redis_status(exc)
        reason = (
            f"the consumer's Redis at {_where(store)} {PROBLEM[status]} "
            f"({type(exc).__name__}: {exc}): {UNAVAILABLE}. Fix: {FIX[status]}"
        )
        return {"status": "degraded", "redis": status, "reason": reason}, 503
    return {"status": "ok", "redis": "ok"}, 200


def _where(store: object) -> str:
    """host:port (or the socket path) of the store's Redis, without credentials."""
    pool = getattr(getattr(store, "client", None), "connection_pool", None)
    options = getattr(pool, "connection_kwargs", {})
    if options.get("path"):
        return str(options["path"])
    return f"{options.get('host', '?')}:{options.get('port', '?')}"
