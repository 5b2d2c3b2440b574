"""Health, the root redirect and the chat widget test page."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, redirect, send_from_directory
from flask.typing import ResponseReturnValue

from threefold.apps.qa.resources import EXTENSION_KEY, Resources

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
DEGRADED_REASONS = {
    "not configured": "REDIS_URL is not set: sessions and feedback are kept in this process "
    "only. Fix: set REDIS_URL",
    "unreachable": "Redis does not answer: chat sessions and feedback fail until it is back",
}

pages_blueprint = Blueprint("qa_pages", __name__)


@pages_blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when Redis answers; 503 "degraded" with the reason otherwise (the bot still answers)."""
    resources: Resources = current_app.extensions[EXTENSION_KEY]
    bot = resources.manager.bot
    redis = resources.redis_status()
    body = {
        "status": "ok" if redis == "ok" else "degraded",
        "bot_version": bot.version,
        "faqs": len(bot.kb),
        "redis": redis,
    }
    if redis != "ok":
        body["reason"] = DEGRADED_REASONS[redis]
    return jsonify(body), 200 if redis == "ok" else 503


@pages_blueprint.get("/")
def index() -> ResponseReturnValue:
    return redirect("/demo")


@pages_blueprint.get("/demo")
def demo() -> ResponseReturnValue:
    """A minimal page with the chat widget embedded by its one script tag."""
    return send_from_directory(STATIC_DIR, "demo.html")
