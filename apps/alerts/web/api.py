"""The dashboard's JSON API: keys, series, recent alerts and the live alert feed (SSE).

Data comes from the consumer's Redis state: closed windows (`history`), open windows, and the
alert feed, a Redis stream the consumer appends to once an alert is on the alerts topic. SSE
clients block on XREAD, and resume after a reconnect from the `Last-Event-ID` the browser sends
(the stream entry id), so a dropped connection misses no alert. Each XREAD blocks for less than
half the Redis client's socket timeout and a keepalive comment follows every empty read, so
neither redis-py nor a proxy ever sees an idle connection; Redis out of reach mid-stream is a
comment and a retry from the same id, Redis refusing the read (an error answer) ends the stream.

Each feed holds a server thread, so a worker serves at most `StreamSlots.total` feeds at once
(its threads less two) and FEEDS_PER_CLIENT per client, answering 503 + Retry-After beyond; and
each feed ends after FEED_MAX_S with an `end` event naming the id to resume from. Without Redis
(not configured or down) every route answers 503 with a `Retry-After` header and the reason;
the feed too, before it starts streaming. The routes read Redis through the breaker of its
client (`core.redis_breaker`, shared with the rate limiter): once a read or a rate-limit check
found Redis not answering, they answer 503 at once, and one request per retry window waits for
the client's socket timeout to find out whether it is back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import TypeVar

import redis
from flask import Blueprint, Response, current_app, request

from threefold.apps.alerts.resources import REDIS_FIX, current_resources
from threefold.apps.alerts.state.store import StateStore
from threefold.apps.alerts.windows import split_key
from threefold.core.query_args import int_arg
from threefold.core.redis_breaker import BreakerOpen, breaker_for
from threefold.core.stream_slots import StreamSlots
from threefold.core.web import ApiError, client_key

FEED_SLOTS = "threefold.alerts.feed_slots"  # app.extensions key of the feeds' StreamSlots
FEEDS_PER_CLIENT = 2
FEED_MAX_S = 300  # then the stream ends and the page reconnects, resuming where it was
STREAM_ID = re.compile(r"[0-9]+(?:-[0-9]+)?")
MAX_ID_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit numbers
MAX_KEYS = 5000  # /api/keys answers at most this many per page
SERIES_KEYS = 50  # /api/series?kind= answers the windows of this many keys by default
MAX_SERIES_KEYS = 200
KEEPALIVE_S = 15.0
RETRY_AFTER_S = 30
REDIS_RETRY_S = 1.0
MAX_KEY_CHARS = 200  # the longest series key accepted: `topic:` or `entity:` and the name
KEY_KINDS = ("entity", "topic")
SHOWN_CHARS = 40  # how much of a rejected value an error message quotes

api = Blueprint("alerts_api", __name__, url_prefix="/api")
V = TypeVar("V", bound=Callable[..., object])


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


def _through_breaker(view: V) -> V:
    """Run `view` through the breaker of the store's Redis client: a BreakerOpen (a 503) at once
    while Redis did not answer a moment ago, instead of a wait for the socket timeout."""

    @wraps(view)
    def guarded(*args: object, **kwargs: object) -> object:
        client = getattr(current_resources().store, "client", None)
        if client is None:  # not configured (the view answers 503), or a store without Redis
            return view(*args, **kwargs)
        with breaker_for(client).attempt(f"dashboard {request.path}"):
            return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


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
    if isinstance(exc, BreakerOpen):
        return unavailable(StoreUnavailable("unreachable", f"the consumer's Redis: {exc}"))
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


def _page(items: list[str], limit: int, offset: int) -> tuple[list[str], dict]:
    """`items[offset:offset + limit]` and what the answer says about paging on."""
    page = items[offset : offset + limit]
    more = offset + len(page) < len(items)
    return page, {"total": len(items), "next_offset": offset + len(page) if more else None}


@api.get("/keys")
@_through_breaker
def keys() -> dict:
    """The topics and entities the consumer has aggregated, most recent first, a page at a
    time (`limit`, `offset`; `next_offset` is null on the last page)."""
    limit = int_arg("limit", 500, low=1, high=MAX_KEYS)
    offset = int_arg("offset", 0, low=0, high=10**9)
    page, paging = _page(_store().aggregation_keys(), limit, offset)
    out = []
    for key in page:
        kind, name = split_key(key)
        out.append({"key": key, "kind": kind, "name": name})
    return {"keys": out, **paging}


@api.get("/series")
@_through_breaker
def series() -> dict:
    """Windows of one key (`key=topic:legal`) or of the keys of a kind (`kind=entity`), the
    most recently updated `keys` of them (a page: `offset`, `next_offset`)."""
    limit = int_arg("limit", 100, low=1, high=500)
    key_limit = int_arg("keys", SERIES_KEYS, low=1, high=MAX_SERIES_KEYS)
    offset = int_arg("offset", 0, low=0, high=10**9)
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
    of_kind = [key] if key else [k for k in store.aggregation_keys() if split_key(k)[0] == kind]
    wanted, paging = _page(of_kind, key_limit, offset)
    open_windows: dict[str, list[dict]] = {}
    for counts in store.open_windows():
        open_windows.setdefault(counts.key, []).append({**counts.to_dict(), "open": True})
    result = []
    for k in wanted:
        closed = [{**w, "open": False} for w in store.history(k, limit)]
        windows = (closed + open_windows.get(k, []))[-limit:]
        kind_of, name = split_key(k)
        result.append({"key": k, "kind": kind_of, "name": name, "windows": windows})
    return {"series": result, **paging}


@api.get("/alerts")
@_through_breaker
def recent_alerts() -> dict:
    """The most recent alerts, newest first."""
    limit = int_arg("limit", 50, low=1, high=1000)
    return {"alerts": [{"event_id": i, **a} for i, a in _store().recent_alerts(limit)]}


@api.get("/alerts/stream")
@_through_breaker
def alert_stream() -> Response:
    """Server-sent events: one `alert` event per new alert; resumes from Last-Event-ID.

    `?since=0` replays the whole feed first; the stream ends after FEED_MAX_S (or `?timeout=S`
    seconds, if sooner) with an `end` event. Redis is read once before the stream starts, so
    a Redis that is down is a 503 JSON answer here (inside the stream, Flask's error handlers no
    longer apply); so is a worker or client that has no feed slot left.
    """
    header = request.headers.get("Last-Event-ID")
    last_id = header or request.args.get("since") or "$"
    if last_id != "$" and not _valid_stream_id(last_id):
        where = "the Last-Event-ID header" if header else "since"
        raise ApiError(
            400,
            f"{where} must be a stream id like 1714550400000-0 (digits, each part at most "
            f"{MAX_ID_PART}), found {_shown(last_id)}; leave it out to start from now",
            field="Last-Event-ID" if header else "since",
        )
    timeout = int_arg("timeout", 0, low=0, high=24 * 3600)
    life_s = min(timeout, FEED_MAX_S) if timeout else FEED_MAX_S
    store = _store()
    newest = store.recent_alerts(1)
    if last_id == "$":  # resolved now, so alerts arriving between two reads are not skipped
        last_id = newest[0][0] if newest else "0-0"
    slots: StreamSlots = current_app.extensions[FEED_SLOTS]
    events = iter(()) if request.method == "HEAD" else _events(store, last_id, life_s)
    return slots.open(events, client=client_key())


def _valid_stream_id(value: str) -> bool:
    """ASCII digits, `MS` or `MS-SEQ`, each part a 64-bit unsigned number (what Redis takes)."""
    if not STREAM_ID.fullmatch(value):
        return False
    return all(int(part) <= MAX_ID_PART for part in value.split("-"))


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


def _events(store: StateStore, last_id: str, life_s: float) -> Iterator[str]:
    """The feed after `last_id` for `life_s` seconds, then an `end` event with the id to resume
    from; a Redis that refuses the read ends it early (the page reconnects, Redis is read again
    before the new stream starts)."""
    deadline = time.monotonic() + life_s
    keepalive_s = _keepalive_s(store)
    yield "retry: 2000\n\n"
    while (left_s := deadline - time.monotonic()) > 0:
        block_ms = max(1, int(min(keepalive_s, left_s) * 1000))
        try:
            entries = store.read_feed(last_id, block_ms=block_ms)
        except redis.ResponseError as exc:
            yield f": redis refused the read ({type(exc).__name__}), stream closed\n\n"
            return
        except redis.RedisError as exc:  # out of reach: the stream stays open
            yield f": redis unavailable ({type(exc).__name__}), retrying\n\n"
            time.sleep(REDIS_RETRY_S)
            continue
        if not entries:
            yield ": keepalive\n\n"
            continue
        for entry_id, alert in entries:
            last_id = entry_id
            yield f"id: {entry_id}\nevent: alert\ndata: {json.dumps(alert)}\n\n"
    yield f"event: end\ndata: {json.dumps({'resume_from': last_id})}\n\n"
