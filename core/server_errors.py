"""JSON for the errors an HTTP server sends before Flask sees the request (414, 431, 400).

werkzeug's development server (`threefold serve ...`, the demo) and gunicorn (deploy/) answer a
too-long request line or too many header bytes themselves, with HTML. `JsonErrorRequestHandler`
(werkzeug) and `install_gunicorn_json_errors()` (gunicorn) make those answers the same JSON
error body every API sends: `{"error": code, "message": ...}`.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from threefold.core.web import ERROR_CODES


def json_error_body(status: int, message: str) -> bytes:
    """The JSON error body of `status`, as the apps' own errors look."""
    return json.dumps({"error": ERROR_CODES.get(status, "error"), "message": message}).encode()


class JsonErrorRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, answering its own protocol errors with JSON. A client that
    sends nothing for `timeout` seconds (half a request line or headers) is disconnected
    instead of holding a server thread for ever (werkzeug sets no timeout of its own)."""

    timeout = 30

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
