"""Flask plumbing shared by every threefold HTTP API: JSON errors, logs, metrics, CORS, limits."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError, ResponseError
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed, NotFound

from threefold.core.ids import describe, is_visible
from threefold.core.privacy import mask_pii
from threefold.core.rate_limit import (
    SharedRateLimiter,
    TokenBucketLimiter,
    retry_after_seconds,
)
from threefold.core.redis_errors import redis_reply, redis_unavailable
from threefold.core.untrusted_json import MAX_JSON_DEPTH, UntrustedJsonError, loads_untrusted

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}

# Retry-After (seconds) of a JSON 503 whose view set none: clients wait this long, then retry.
DEFAULT_RETRY_AFTER_S = 5
# Longest wait for the next piece of a request body before it is answered with a 408: a client
# that sends less than its Content-Length (or stops mid-chunk) frees the server thread then.
BODY_READ_TIMEOUT_S = 10.0


class ApiError(Exception):
    """Raise in a view to answer with a JSON error: `{"error": code, "message": ..., **details}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = True,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, "error")
        self.retryable = retryable
        self.details = details

    def to_response(self) -> Response:
        """The JSON error; a `retry_after` detail (seconds) also becomes the Retry-After header.

        A 503 raised with `retryable=False` (a feature switched off by configuration, which no
        wait will change) gets no Retry-After, not even the default one.
        """
        body = {"error": self.code, "message": self.message, **self.details}
        response = _json_response(body, self.status)
        if "retry_after" in self.details:
            response.headers["Retry-After"] = str(self.details["retry_after"])
        elif not self.retryable and has_request_context():
            g.threefold_not_retryable = True
        return response


def _json_response(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def read_json_body(*, max_bytes: int = 64_000, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The request's JSON object, or an ApiError (400, 408, 413, 415) that says what was wrong.

    At most `max_bytes + 1` bytes are read, also from a chunked body (no Content-Length), and a
    client that stalls for BODY_READ_TIMEOUT_S is answered 408. Refused with 400: an empty body,
    an invalid Content-Length, malformed chunked encoding, invalid JSON, NaN/Infinity, nesting
    deeper than `max_depth`, and strings that are not valid Unicode (lone surrogates "\\ud800").
    """
    declared = request.headers.get("Content-Length")
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if declared is not None and not chunked and not _is_byte_count(declared):
        raise ApiError(
            400,
            f"Content-Length header is {declared!r}; expected the body's size in bytes (a whole "
            "number). Send the body with a correct Content-Length, or let the client set it",
        )
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(
            413, f"request body is {length} bytes; the limit is {max_bytes}", limit=max_bytes
        )
    if not request.is_json:
        raise ApiError(
            415,
            f"expected Content-Type application/json, found {request.mimetype or 'none'!r}",
        )
    raw = _read_body(max_bytes + 1, chunked=chunked)
    if len(raw) > max_bytes:
        raise ApiError(
            413,
            f"request body is over {max_bytes} bytes; the limit is {max_bytes}",
            limit=max_bytes,
        )
    if not raw:
        raise ApiError(400, 'request body is empty; send a JSON object, e.g. {"key": "value"}')
    body = parse_json(raw, max_depth=max_depth, what="request body")
    if not isinstance(body, dict):
        raise ApiError(400, f"expected a JSON object, found {type(body).__name__}")
    return body


def _is_byte_count(header: str) -> bool:
    value = header.strip()
    return value.isascii() and value.isdigit()


def _read_body(limit: int, *, chunked: bool) -> bytes:
    """Up to `limit` bytes of the request body; transport failures become a 408 or 400 ApiError."""
    pieces: list[bytes] = []
    size = 0
    _time_out_body_reads()
    try:
        stream = request.stream
        while size < limit and (piece := stream.read(limit - size)):
            pieces.append(piece)
            size += len(piece)
    except (TimeoutError, ClientDisconnected) as exc:
        # werkzeug reports a read that timed out under a Content-Length as a disconnect.
        if not isinstance(exc, TimeoutError) and not isinstance(exc.__context__, TimeoutError):
            raise
        raise ApiError(
            408,
            f"request body stopped arriving: nothing came for {BODY_READ_TIMEOUT_S:g} s. Send "
            "the whole body without pausing, with a Content-Length that matches its size",
        ) from None
    except Exception as exc:
        if not chunked or not _is_chunk_error(exc):
            raise
        raise ApiError(
            400,
            f"the request body's chunked encoding is malformed ({str(exc) or type(exc).__name__}); "
            "send chunks as '<size in hex>\\r\\n<data>\\r\\n' ending with '0\\r\\n\\r\\n', "
            "or send the body with a Content-Length instead",
        ) from None
    return b"".join(pieces)


def _is_chunk_error(error: Exception) -> bool:
    """Whether the server's de-chunking refused the body: werkzeug raises a plain OSError,
    gunicorn a ParseException (or NoMoreData, an OSError, when the body ends early)."""
    gunicorn_errors = sys.modules.get("gunicorn.http.errors")
    if gunicorn_errors is not None and isinstance(error, gunicorn_errors.ParseException):
        return True
    return isinstance(error, OSError) and not isinstance(error, ConnectionError)


def _time_out_body_reads() -> None:
    """Give each socket read of this request's body at most BODY_READ_TIMEOUT_S.

    Neither werkzeug's server nor gunicorn's gthread worker sets a read timeout of its own; both
    hand the app the client socket (`werkzeug.socket`, `gunicorn.socket`; other servers and the
    test client pass none). The timeout stays for the rest of the request, so it also bounds the
    server's own drain of a body left unread after a 413; gunicorn clears it before reusing a
    kept-alive connection, werkzeug closes every connection.
    """
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if sock is None:
        return
    current = sock.gettimeout()
    if current is None or current > BODY_READ_TIMEOUT_S:
        sock.settimeout(BODY_READ_TIMEOUT_S)


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON") -> Any:
    """Parse untrusted JSON; a 400 ApiError names what is wrong (syntax, depth, Unicode, NaN)."""
    try:
        return loads_untrusted(raw, max_depth=max_depth, what=what)
    except UntrustedJsonError as exc:
        details = {"field": exc.path} if exc.path else {}
        raise ApiError(400, str(exc), **details) from None


def require_fields(body: dict[str, Any], spec: dict[str, type | tuple[type, ...]]) -> None:
    """Raise a 400 ApiError naming the first field that is missing or of the wrong type."""
    for field, expected in spec.items():
        if field not in body:
            raise ApiError(400, f"missing field {field!r}", field=field)
        value = body[field]
        # bool is an int subclass; never accept it where a number is asked for.
        wrong_bool = isinstance(value, bool) and bool not in _as_tuple(expected)
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in _as_tuple(expected))
            raise ApiError(
                400,
                f"field {field!r} must be {names}, found {type(value).__name__}",
                field=field,
            )


def require_text(
    body: dict[str, Any], field: str, *, max_chars: int, empty_hint: str, **too_long: Any
) -> str:
    """`body[field]` stripped: a 400 ApiError when it is missing, not a string, empty, longer
    than `max_chars` (`too_long` adds details such as `code` to that error) or holds nothing
    visible (zero-width spaces, a BOM, blank fillers: no `core.ids.is_visible` character), as it
    would show as a blank message."""
    require_fields(body, {field: str})
    text = body[field].strip()
    if not text:
        raise ApiError(400, f"{field} is empty; {empty_hint}", field=field)
    if not any(is_visible(char) for char in text):
        more = ", ..." if len(text) > 1 else ""
        raise ApiError(
            400,
            f"{field} is empty: it holds only invisible characters ({describe(text[0])}{more}); "
            f"{empty_hint}",
            field=field,
        )
    if len(text) > max_chars:
        raise ApiError(
            400,
            f"{field} is {len(text)} characters; the limit is {max_chars}. Shorten it",
            field=field,
            **too_long,
        )
    return text


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def client_key() -> str:
    """The client a request counts against: the peer address (see `trusted_proxies`)."""
    return request.remote_addr or "unknown"


def setup_web_app(
    app: Flask,
    *,
    name: str,
    registry: CollectorRegistry,
    allowed_origins: Sequence[str] = (),
    rate_limit_per_minute: int | None = None,
    rate_limit_paths: Sequence[str] = ("/api/",),
    trusted_proxies: int = 0,
    redis: Any | None = None,
    redis_prefix: str = "threefold:",
) -> None:
    """Install JSON errors, request logs, Prometheus metrics, `/metrics`, CORS and rate limits.

    With a `redis` client the rate limit is shared by every worker (keys under `redis_prefix`);
    without one, or while Redis is down, each process counts on its own. Request logs carry the
    path only: never the query string or headers, so tokens do not reach the logs.

    `trusted_proxies`: how many reverse proxies in front of the app set X-Forwarded-For; only
    then is that header believed (werkzeug's ProxyFix), so clients cannot spoof their address.
    """
    if trusted_proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies)
    http_log = logging.getLogger(f"threefold.{name}.http")
    requests_total = Counter(
        "http_requests_total",
        "HTTP requests answered",
        ["method", "endpoint", "status"],
        registry=registry,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "HTTP request latency",
        ["method", "endpoint"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    limiter: SharedRateLimiter | TokenBucketLimiter | None = None
    if rate_limit_per_minute and redis is not None:
        limiter = SharedRateLimiter(
            redis, prefix=redis_prefix, rate_per_minute=rate_limit_per_minute
        )
    elif rate_limit_per_minute:
        limiter = TokenBucketLimiter(rate_limit_per_minute)
    origins = frozenset(o.rstrip("/") for o in allowed_origins)

    @app.before_request
    def _start() -> Response | None:
        g.threefold_started = time.perf_counter()
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return Response(status=204)
        if limiter and request.path.startswith(tuple(rate_limit_paths)):
            wait = limiter.acquire(client_key())
            if wait > 0:
                seconds = retry_after_seconds(wait)
                raise ApiError(
                    429,
                    f"too many requests from this client; retry in {seconds} s",
                    retry_after=seconds,
                )
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        if (
            response.status_code == 503
            and response.is_json
            and "Retry-After" not in response.headers
            and not g.get("threefold_not_retryable")
        ):
            response.headers["Retry-After"] = str(DEFAULT_RETRY_AFTER_S)
        _protect(response)
        origin = request.headers.get("Origin")
        if origin and origin.rstrip("/") in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("threefold_started", time.perf_counter())
        requests_total.labels(request.method, endpoint, str(response.status_code)).inc()
        latency.labels(request.method, endpoint).observe(elapsed)
        http_log.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "path": mask_pii(request.path),
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 2),
                    "client": client_key(),
                }
            },
        )
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error.to_response()

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        response = ApiError(error.code or 500, _http_error_message(error)).to_response()
        for header, value in error.get_headers(request.environ):
            if header.lower() != "content-type":  # Allow on a 405, WWW-Authenticate, ...
                response.headers[header] = value
        return response

    @app.errorhandler(RedisError)
    def _redis_error(error: RedisError) -> Response:
        if not redis_unavailable(error):  # a bug (wrong type, a script's error): a 500
            return _unexpected(error)
        http_log.warning(
            "redis failed on %s %s: %s", request.method, request.path, _redis_reason(error)
        )
        return ApiError(
            503, f"redis {_redis_reason(error)}; retry shortly", code="redis_unavailable"
        ).to_response()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        http_log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
        return ApiError(500, "internal error; the server log has the details").to_response()

    metrics = Blueprint(f"{name}_metrics", __name__)

    @metrics.get("/metrics")
    def _metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    app.register_blueprint(metrics)


def _protect(response: Response) -> None:
    """Headers every answer carries unless its view set its own: no MIME sniffing, no framing
    by other sites (clickjacking the agent console or an admin page), and nothing a bearer
    token unlocked kept in a browser's or a shared proxy's cache."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    if "Authorization" in request.headers:
        response.headers.setdefault("Cache-Control", "no-store")


def _redis_reason(error: RedisError) -> str:
    """What went wrong with Redis, in a few words: unreachable, or what it refused and why
    (Redis's own reply, never the script's text around it)."""
    if isinstance(error, ResponseError):
        detail = redis_reply(error)[:200].rstrip(".")
        return f"refused the request ({type(error).__name__}: {detail})"
    return f"unreachable ({type(error).__name__})"


def _http_error_message(error: HTTPException) -> str:
    """werkzeug's description, or for routing errors one that names the path and methods."""
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = ", ".join(sorted(error.valid_methods))
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if isinstance(error, NotFound) and request.url_rule is None:
        return f"no route for {request.path}; check the path and the method"
    return error.description or error.name


def bearer_token_required(config_key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Protect a view with the bearer token in `app.config[config_key]`.

    When none is set the view answers 503 without Retry-After: only configuration enables it.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            expected = current_app.config.get(config_key)
            if not expected:
                raise ApiError(
                    503,
                    f"admin API disabled: no token configured ({config_key} is not set)",
                    retryable=False,
                )
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise ApiError(401, "missing 'Authorization: Bearer <token>' header")
            if not hmac.compare_digest(token.strip().encode(), str(expected).encode()):
                raise ApiError(403, "invalid admin token")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def named_token_required(
    tokens: Callable[[], Any], *, person: str, disabled: str, code: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Protect a view for people with their own bearer token; sets `g.signed_in` to the name.

    `tokens()` returns the request's `core.named_tokens.NamedTokens`; when it holds nobody the
    view answers 503 with `disabled` (which says the setting) and `code`, without Retry-After;
    no or a malformed header is a 401, a token nobody holds a 403.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            known = tokens()
            if not known:
                raise ApiError(503, disabled, code=code, retryable=False)
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, f"missing 'Authorization: Bearer <{person} token>' header")
            name = known.name_for(token.strip())
            if name is None:
                raise ApiError(
                    403, f"unknown {person} token; ask your admin for yours", code="forbidden"
                )
            g.signed_in = name
            return view(*args, **kwargs)

        return wrapped

    return decorator


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send all logs to stderr as JSON lines (call once, at a server's entry point)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
