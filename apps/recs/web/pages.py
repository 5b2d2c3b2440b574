"""Health check and the storefront page (recommendations, plus the FAQ chat widget when set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, send_from_directory
from markupsafe import escape

from threefold.apps.recs.web.shared import resources

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CHAT_TITLE = "threefold store help"
DEGRADED_REASON = "serving without the shared cache, histories and catalog changes"

pages = Blueprint("recs_pages", __name__)


@pages.get("/healthz")
def healthz() -> Any:
    """200 "ok" with Redis up; 503 "degraded" with a reason (and the fix) when it is not
    configured or down, or holds another type at the shared event log key."""
    shared = resources()
    body: dict[str, Any] = {
        "status": "ok",
        "redis": "up",
        "items": shared.recommender.item_count,
        "cache": shared.metrics.snapshot(),
        "catalog_version": shared.catalog_changes.version,
        "model": shared.model_id,
        "model_version": shared.model_version,
        "ranker": shared.model_info,
    }
    if shared.redis.url is None:
        body |= {
            "status": "degraded",
            "redis": "not configured",
            "reason": f"{DEGRADED_REASON}; set REDIS_URL",
        }
    elif not shared.redis.available:
        body |= {
            "status": "degraded",
            "redis": "unreachable",
            "reason": f"{DEGRADED_REASON}; Redis at {shared.redis.settings.display_url} "
            "does not answer",
        }
    elif (problem := shared.histories.shared_log_problem()) is not None:
        body |= {"status": "degraded", "shared_event_log": "wrong type", "reason": problem}
    return jsonify(body), 200 if body["status"] == "ok" else 503


@pages.get("/store")
def storefront() -> Any:
    """The shop page; with `chat_url` set it embeds that FAQ bot's chat widget (one deferred
    script tag: a bot host that hangs never holds up the page's load), then the store's own
    `chat-fallback.js`, deferred after it: when the widget's script could not load (the bot's
    server is down), it shows a launcher whose panel says chat is unavailable for now."""
    page = (STATIC_DIR / "store.html").read_text(encoding="utf-8")
    chat_url = resources().settings.chat_url.rstrip("/")
    if chat_url:
        src = f"{escape(chat_url)}/static/widget.js"
        tags = (
            f'<script src="{src}" data-title="{CHAT_TITLE}" defer></script>\n'
            f'  <script src="/store/static/chat-fallback.js" data-widget="{src}" '
            f'data-title="{CHAT_TITLE}" defer></script>'
        )
        page = page.replace("</body>", f"  {tags}\n</body>")
    return Response(page, mimetype="text/html")


@pages.get("/store/static/<path:name>")
def storefront_asset(name: str) -> Any:
    return send_from_directory(STATIC_DIR, name)
