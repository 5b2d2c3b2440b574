"""Dashboard: sentiment over time per topic and entity, a live alert feed (SSE), JSON API.

Data comes from the consumer's Redis state: closed windows (`history`), open windows, and the
alert feed, a Redis stream the consumer appends to once an alert is on the alerts topic. SSE
clients block on XREAD, and resume after a reconnect from the `Last-Event-ID` the browser sends
(the stream entry id), so a dropped connection misses no alert.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from prometheus_client import CollectorRegistry

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.windows import split_key
from threefold.core.errors import ConfigError
from threefold.core.query_args import int_arg
from threefold.core.web import ApiError, setup_web_app

STATIC = Path(__file__).resolve().parent / "static"
STORE = "alerts_store"
KEEPALIVE_S = 15.0

api = Blueprint("alerts_api", __name__, url_prefix="/api")
pages = Blueprint("alerts_pages", __name__)


def create_app(config: AlertsConfig | None = None, *, store=None) -> Flask:
    """Flask app factory; `store` defaults to a RedisStateStore on `config.redis_url`."""
    config = config or AlertsConfig.from_env()
    if store is None:
        if not config.redis_url:
            raise ConfigError(
                "the dashboard reads the alerts consumer's Redis state, but no Redis URL is set. "
                "Fix: set REDIS_URL (or --redis-url) to the Redis the consumer uses"
            )
        from threefold.apps.alerts.state.redis_store import RedisStateStore

        store = RedisStateStore.from_url(config.redis_url, config.redis_prefix)
    app = Flask(__name__, static_folder=None)
    app.config["ALERTS"] = config
    app.extensions[STORE] = store
    registry = CollectorRegistry()
    setup_web_app(app, name="alerts", registry=registry, allowed_origins=config.allowed_origins)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    return app


def _store():
    return current_app.extensions[STORE]


@pages.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@pages.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(STATIC, name)


@pages.get("/healthz")
def healthz() -> tuple[dict, int]:
    try:
        _store().watermark()
    except Exception as exc:
        return {"status": "error", "redis": f"unreachable: {type(exc).__name__}"}, 503
    return {"status": "ok", "redis": "ok"}, 200


@api.get("/keys")
def keys() -> dict:
    """Every topic and entity the consumer has aggregated, most recent first."""
    out = []
    for key in _store().aggregation_keys():
        kind, name = split_key(key)
        out.append({"key": key, "kind": kind, "name": name})
    return {"keys": out}


@api.get("/series")
def series() -> dict:
    """Windows of one key (`key=topic:legal`) or of every key of a kind (`kind=entity`)."""
    limit = int_arg("limit", 100, low=1, high=500)
    key, kind = request.args.get("key"), request.args.get("kind")
    if bool(key) == bool(kind):
        raise ApiError(
            400, "pass exactly one of key=KIND:NAME or kind=topic|entity", code="bad_parameter"
        )
    if kind and kind not in ("topic", "entity"):
        raise ApiError(400, f"kind must be topic or entity, found {kind!r}", code="bad_parameter")
    store = _store()
    wanted = [key] if key else [k for k in store.aggregation_keys() if split_key(k)[0] == kind]
    open_windows: dict[str, list[dict]] = {}
    for counts in store.open_windows():
        open_windows.setdefault(counts.key, []).append({**counts.to_dict(), "open": True})
    result = []
    for k in wanted:
        closed = [{**w, "open": False} for w in store.history(k, limit)]
        windows = (closed + open_windows.get(k, []))[-limit:]
        kind_of, name = split_key(k)
        result.append({"key": k, "kind": kind_of, "name": name, "windows": windows})
    return {"series": result}


@api.get("/alerts")
def recent_alerts() -> dict:
    """The most recent alerts, newest first."""
    limit = int_arg("limit", 50, low=1, high=1000)
    return {"alerts": [{"event_id": i, **a} for i, a in _store().recent_alerts(limit)]}


@api.get("/alerts/stream")
def alert_stream() -> Response:
    """Server-sent events: one `alert` event per new alert; resumes from Last-Event-ID.

    `?since=0` replays the whole feed first; `?timeout=S` ends the stream after S seconds.
    """
    store = _store()
    last_id = request.headers.get("Last-Event-ID") or request.args.get("since") or "$"
    if last_id != "$" and not _valid_stream_id(last_id):
        raise ApiError(400, f"since must be a stream id like 1714550400000-0, found {last_id!r}")
    timeout = int_arg("timeout", 0, low=0, high=24 * 3600)
    return Response(
        _events(store, last_id, timeout),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _valid_stream_id(value: str) -> bool:
    parts = value.split("-")
    return 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts)


def _events(store, last_id: str, timeout: int) -> Iterator[str]:
    if last_id == "$":
        # Resolve "$" now so alerts arriving between our reads are not skipped.
        recent = store.recent_alerts(1)
        last_id = recent[0][0] if recent else "0-0"
    deadline = time.monotonic() + timeout if timeout else None
    yield "retry: 2000\n\n"
    while deadline is None or time.monotonic() < deadline:
        wait_s = KEEPALIVE_S if deadline is None else min(KEEPALIVE_S, deadline - time.monotonic())
        entries = store.read_feed(last_id, block_ms=max(1, int(wait_s * 1000)))
        if not entries:
            yield ": keepalive\n\n"
            continue
        for entry_id, alert in entries:
            last_id = entry_id
            yield f"id: {entry_id}\nevent: alert\ndata: {json.dumps(alert)}\n\n"
