"""The dashboard's JSON API: keys, series, recent alerts and the live alert feed (SSE).

Data comes from the consumer's Redis state: closed windows (`history`), open windows, and the
alert feed, a Redis stream the consumer appends to once an alert is on the alerts topic. SSE
clients block on XREAD, and resume after a reconnect from the `Last-Event-ID` the browser sends
(the stream entry id), so a dropped connection misses no alert. Each XREAD blocks for less than
half the Redis client's socket timeout and a keepalive comment follows every empty read, so
neither redis-py nor a proxy ever sees an idle connection; a Redis failure mid-stream is a
comment and a retry from the same id, not a dropped feed. Without Redis (not configured or
down) every route answers 503 with a `Retry-After` header and the reason; the feed too, before
it starts streaming.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, request

from threefold.apps.alerts.resources import REDIS_FIX, current_resources
from threefold.apps.alerts.state.store import StateStore
from threefold.apps.alerts.windows import split_key
from threefold.core.query_args import int_arg
from threefold.core.web import ApiError

KEEPALIVE_S = 15.0
RETRY_AFTER_S = 30
REDIS_RETRY_S = 1.0
MAX_KEY_CHARS = 200  # the longest series key accepted: `topic:` or `entity:` and the name
KEY_KINDS = ("entity", "topic")
SHOWN_CHARS = 40  # how much of a rejected value an error message quotes

api = Blueprint("alerts_api", __name__, url_prefix="/api")


class StoreUnavailable(Exception):
    """The consumer's Redis is not configured, did not answer, or refused the command."""

    def __init__(self, redis_status: str, message: str) -> None:
        super().__init__(message)
        self.redis_status = redis_status
        self.message = message


def _store() -> StateStore:
    store = current_resources().store
    if store is None:
        raise StoreUnavailable("not configured", f"the dashboard has no Redis to read: {REDIS_FIX}")
    return store


@api.errorhandler(StoreUnavailable)
def unavailable(exc: StoreUnavailable) -> Response:
    error = ApiError(503, exc.message, code="redis_unavailable", redis=exc.redis_status)
    response = error.to_response()
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def redis_status(exc: Exception) -> str:
    """How Redis failed: unreachable (no connection, a timeout) or refusing (it answered with
    an error: OOM at maxmemory, READONLY after a failover, MISCONF, a refused login)."""
    unreachable = (redis.ConnectionError, redis.TimeoutError, OSError)
    return "unreachable" if isinstance(exc, unreachable) else "refusing"


@api.errorhandler(redis.RedisError)
def redis_down(exc: redis.RedisError) -> Response:
    """Redis out of reach, or answering with an error: 503, not a 500."""
    if redis_status(exc) == "refusing":
        return unavailable(StoreUnavailable("refusing", f"the consumer's Redis refused: {exc}"))
    return unavailable(
        StoreUnavailable("unreachable", f"the consumer's Redis did not answer ({exc!r})")
    )


def _shown(value: str) -> str:
    """`value` quoted for an error message, cut to SHOWN_CHARS with its length when longer."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def _check_series_key(key: str) -> None:
    """400 unless `key` is KIND:NAME with a known kind and a printable name."""
    kind, _, name = key.partition(":")
    if kind in KEY_KINDS and name.strip() and name.isprintable() and len(key) <= MAX_KEY_CHARS:
        return
    raise ApiError(
        400,
        f"key must be topic:NAME or entity:NAME (NAME printable, the key {MAX_KEY_CHARS} "
        f"characters at most), found {_shown(key)}; GET /api/keys lists the keys",
        code="bad_parameter",
        field="key",
    )


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
    if kind and kind not in KEY_KINDS:
        raise ApiError(
            400,
            f"kind must be topic or entity, found {_shown(kind)}",
            code="bad_parameter",
            field="kind",
        )
    if key:
        _check_series_key(key)
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
    Redis is read once before the stream starts, so a Redis that is down is a 503 JSON answer
    here (inside the stream, Flask's error handlers no longer apply).
    """
    store = _store()
    last_id = request.headers.get("Last-Event-ID") or request.args.get("since") or "$"
    if last_id != "$" and not _valid_stream_id(last_id):
        raise ApiError(
            400, f"since must be a stream id like 1714550400000-0, found {_shown(last_id)}"
        )
    timeout = int_arg("timeout", 0, low=0, high=24 * 3600)
    newest = store.recent_alerts(1)
    if last_id == "$":  # resolved now, so alerts arriving between two reads are not skipped
        last_id = newest[0][0] if newest else "0-0"
    return Response(
        _events(store, last_id, timeout),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _valid_stream_id(value: str) -> bool:
    parts = value.split("-")
    return 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts)


def _keepalive_s(store: StateStore) -> float:
    """How long one XREAD may block: KEEPALIVE_S, below half the client's socket timeout.

    The timeout is read off a connection as the pool makes them (not connected): a client made
    without `socket_timeout` has no such key in `connection_kwargs`, and its connections take
    the library's default (5 s in redis-py 8), not "no timeout"; blocking past it made every
    read a TimeoutError.
    """
    pool = getattr(getattr(store, "client", None), "connection_pool", None)
    if pool is None:
        return KEEPALIVE_S
    socket_timeout = pool.connection_class(**pool.connection_kwargs).socket_timeout
    return KEEPALIVE_S if not socket_timeout else min(KEEPALIVE_S, socket_timeout / 2)


def _events(store: StateStore, last_id: str, timeout: int) -> Iterator[str]:
    deadline = time.monotonic() + timeout if timeout else None
    keepalive_s = _keepalive_s(store)
    yield "retry: 2000\n\n"
    while deadline is None or time.monotonic() < deadline:
        wait_s = keepalive_s if deadline is None else min(keepalive_s, deadline - time.monotonic())
        try:
            entries = store.read_feed(last_id, block_ms=max(1, int(wait_s * 1000)))
        except redis.RedisError as exc:  # an error answer too: the stream stays open
            yield f": redis unavailable ({type(exc).__name__}), retrying\n\n"
            time.sleep(REDIS_RETRY_S)
            continue
        if not entries:
            yield ": keepalive\n\n"
            continue
        for entry_id, alert in entries:
            last_id = entry_id
            yield f"id: {entry_id}\nevent: alert\ndata: {json.dumps(alert)}\n\n"
