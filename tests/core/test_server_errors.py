"""Errors the HTTP server sends itself (414, 431) are JSON like every API error."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server

from threefold.core.server_errors import JsonErrorRequestHandler, install_gunicorn_json_errors


def _raw_response(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *header_lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return status, headers, body


@pytest.fixture
def server_port():
    app = Flask(__name__)
    app.get("/")(lambda: "ok")
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=JsonErrorRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def test_a_too_long_request_line_is_a_json_414(server_port: int) -> None:
    request = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = _raw_response(server_port, request)
    assert status.startswith("HTTP/1.0 414") or status.startswith("HTTP/1.1 414")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "uri_too_long"


def test_too_many_headers_is_a_json_431(server_port: int) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    status, response_headers, body = _raw_response(
        server_port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    )
    assert " 431 " in status
    assert response_headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "request_header_fields_too_large"


def test_a_client_stalled_in_its_headers_is_disconnected(server_port: int, monkeypatch) -> None:
    """Half a request, then silence: the server closes the connection after the handler's
    timeout instead of holding a thread for ever (werkzeug has no timeout of its own)."""
    assert JsonErrorRequestHandler.timeout is not None and JsonErrorRequestHandler.timeout <= 60
    monkeypatch.setattr(JsonErrorRequestHandler, "timeout", 0.5)
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        try:
            closed = sock.recv(65536) == b""  # the server hung up (or sent an error first)
        except TimeoutError:
            closed = False  # still held after 10 s
        except ConnectionResetError:
            closed = True
    assert closed, "the server still held the stalled connection after 10 s"
    _raw_response(server_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # and it still serves


def test_gunicorn_writes_json_for_the_requests_it_refuses() -> None:
    from gunicorn import util

    original = util.write_error
    try:
        install_gunicorn_json_errors()
        left, right = socket.socketpair()
        with left, right:
            util.write_error(left, 414, "URI Too Long", "line too long")
            data = right.recv(65536)
    finally:
        util.write_error = original
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "uri_too_long", "message": "line too long"}
