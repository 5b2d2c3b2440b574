"""What HTTP servers do before Flask sees a request: JSON errors, a deadline for stalled clients.

werkzeug's development server (`threefold serve ...`, the demo) and gunicorn (deploy/) answer a
too-long request line or too many header bytes themselves, with HTML. `JsonErrorRequestHandler`
(werkzeug) and `install_gunicorn_json_errors()` (gunicorn) make those answers the same JSON
error body every API sends: `{"error": code, "message": ...}`.

Neither server bounds a socket read of its own: a client that sends half a request line or its
headers and then nothing holds a server thread for ever, and a few such clients (slowloris) hold
every thread of a worker. `JsonErrorRequestHandler.timeout` and
`install_gunicorn_client_timeout()` give each read and write `CLIENT_TIMEOUT_S`; the connection
of a client that stalls longer is closed. (A request body's reads get the shorter
`core.web.BODY_READ_TIMEOUT_S` and a 408.)
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from threefold.core.web import ERROR_CODES

# Longest a client may stall in one socket read or write (request line, headers, the answer).
CLIENT_TIMEOUT_S = 30.0


def json_error_body(status: int, message: str) -> bytes:
    """The JSON error body of `status`, as the apps' own errors look."""
    return json.dumps({"error": ERROR_CODES.get(status, "error"), "message": message}).encode()


class JsonErrorRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, answering its own protocol errors with JSON. A client that
    sends nothing for `timeout` seconds (half a request line or headers) is disconnected
    instead of holding a server thread for ever (werkzeug sets no timeout of its own)."""

    timeout = CLIENT_TIMEOUT_S

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        short, long = self.responses.get(code, ("error", ""))
        body = json_error_body(code, message or explain or long or short)
        self.log_error("code %d, message %s", code, message or short)
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


def install_gunicorn_json_errors() -> None:
    """Make gunicorn write JSON instead of HTML for requests it refuses itself (call once)."""
    from gunicorn import util

    def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        body = json_error_body(status_int, mesg or reason)
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin1") + body)

    util.write_error = write_json_error


def install_gunicorn_client_timeout(seconds: float = CLIENT_TIMEOUT_S) -> None:
    """Give each socket read and write of gunicorn's gthread worker at most `seconds` (call once).

    gthread waits for a new connection's first bytes without a thread, but then reads the
    request line and headers in a pool thread with no timeout. The deadline is set where the
    worker makes a connection's socket blocking to read a request (`TConn.init`, on every
    request of a kept-alive connection too); a stalled client's read raises `TimeoutError`,
    and gunicorn closes that connection and frees the thread.
    """
    from gunicorn.workers import gthread

    original = getattr(gthread.TConn.init, "threefold_original", gthread.TConn.init)

    def init_with_timeout(conn: Any) -> None:
        original(conn)
        conn.sock.settimeout(seconds)

    init_with_timeout.threefold_original = original  # type: ignore[attr-defined]
    gthread.TConn.init = init_with_timeout
