"""The dashboard page, its static files and `/healthz`."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from threefold.apps.alerts.resources import REDIS_FIX, current_resources

STATIC = Path(__file__).resolve().parent.parent / "static"

pages = Blueprint("alerts_pages", __name__)


@pages.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@pages.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(STATIC, name)


@pages.get("/healthz")
def healthz() -> tuple[dict, int]:
    """200 when the consumer's Redis answers; 503 "degraded" with the reason otherwise."""
    store = current_resources().store
    if store is None:
        return {"status": "degraded", "redis": "not configured", "fix": REDIS_FIX}, 503
    try:
        store.watermark()
    except Exception as exc:
        return {"status": "degraded", "redis": "unreachable", "error": type(exc).__name__}, 503
    return {"status": "ok", "redis": "ok"}, 200
