"""Gunicorn settings for the threefold web apps (qa-api, recs-api, dashboard).

Used by the container image (`/etc/threefold/gunicorn.conf.py`) and usable as is outside it:

    gunicorn -c deploy/gunicorn.conf.py 'threefold.apps.qa.web:create_app()'

Environment:
    PORT                  listen port (default 8000), bound on 0.0.0.0
    WEB_CONCURRENCY       worker processes (default 1; each one loads its own models)
    GUNICORN_THREADS      threads per worker (default 8; also serves server-sent-event streams)
    GUNICORN_TIMEOUT      seconds a silent worker may take before it is restarted (default 120)
    GUNICORN_GRACEFUL_TIMEOUT  seconds in-flight requests get to finish after SIGTERM (default
                          30; k8s terminationGracePeriodSeconds must cover it + the preStop sleep)
    GUNICORN_CLIENT_TIMEOUT  seconds a client may stall mid-request (request line, headers) or
                          in reading the answer before its connection is closed (default 30)
    GUNICORN_MAX_REQUESTS recycle a worker after this many requests (default 0 = never)
    GUNICORN_ACCESS_LOG   "1" (default) for one JSON line per request on stdout, "0" for none
    GUNICORN_LOG_SKIP     comma-separated paths left out of the access log (default "/healthz")
    GUNICORN_LOG_LEVEL    gunicorn's own log level (default "info")
    FORWARDED_ALLOW_IPS   proxies trusted for X-Forwarded-* (default "127.0.0.1")
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from gunicorn.glogging import Logger

from threefold.core.privacy import redact_query
from threefold.core.server_errors import (
    CLIENT_TIMEOUT_S,
    install_gunicorn_client_timeout,
    install_gunicorn_json_errors,
)


def _int_env(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"{name}={raw!r}: expected a whole number, e.g. {name}={default}"
        ) from None
    if value < minimum:
        raise SystemExit(f"{name}={value}: expected at least {minimum}")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line for gunicorn's own (error) log."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JsonLogger(Logger):
    """Gunicorn logger writing JSON lines: access log on stdout, server log on stderr."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        skip = os.environ.get("GUNICORN_LOG_SKIP", "/healthz")
        self.skip_paths = {path.strip() for path in skip.split(",") if path.strip()}

    def exception(self, msg, *args, **kwargs) -> None:
        """A client cut off by the client timeout is one warning line, not a traceback."""
        if isinstance(sys.exc_info()[1], TimeoutError):
            self.error_log.warning(
                "a client stalled for %s s mid-request or reading the answer: "
                "connection closed (GUNICORN_CLIENT_TIMEOUT)",
                client_timeout,
            )
            return
        super().exception(msg, *args, **kwargs)

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled or environ.get("PATH_INFO") in self.skip_paths:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "type": "access",
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": redact_query(environ.get("QUERY_STRING", "")) or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "pid": os.getpid(),
        }
        self.access_log.info("%s", json.dumps(entry, ensure_ascii=False))


bind = f"0.0.0.0:{_int_env('PORT', 8000, minimum=1)}"
# One process per worker, each with its own copy of the models: memory grows with workers.
# Scale out with more pods/containers first; Prometheus counters are per process, so with
# WEB_CONCURRENCY > 1 a scrape sees one worker's numbers (see deploy/OPERATIONS.md).
workers = _int_env("WEB_CONCURRENCY", 1, minimum=1)
worker_class = "gthread"
threads = _int_env("GUNICORN_THREADS", 8, minimum=1)
timeout = _int_env("GUNICORN_TIMEOUT", 120, minimum=1)
client_timeout = _int_env("GUNICORN_CLIENT_TIMEOUT", int(CLIENT_TIMEOUT_S), minimum=1)
graceful_timeout = _int_env("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
keepalive = 5
max_requests = _int_env("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
# False: every worker builds its own app (models, FAISS index, Redis pool) after the fork;
# torch and FAISS state must not be shared across fork.
preload_app = False
# Heartbeat files on tmpfs: a slow disk (overlayfs, network volume) cannot stall workers.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = "threefold"
# gunicorn >= 25 opens a control socket under $HOME; containers run with a read-only root.
control_socket_disable = True

logger_class = JsonLogger
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
errorlog = "-"
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") != "0" else None

# Requests gunicorn refuses itself (414 URI too long, 431 header fields too large, 400) get the
# apps' JSON error body instead of gunicorn's HTML page.
install_gunicorn_json_errors()
# A client that stalls mid-request holds a thread for at most client_timeout (slowloris).
install_gunicorn_client_timeout(client_timeout)
