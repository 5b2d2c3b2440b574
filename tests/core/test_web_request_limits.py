"""Request bodies and error answers at the HTTP edge: chunked bodies are read only up to the
limit, malformed or stalled bodies are a JSON 4xx that says why, 405/404/503 answers say what
to do, under werkzeug's server (the demo, `threefold serve`) and gunicorn (deploy/)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, jsonify
from prometheus_client import CollectorRegistry
from support.servers import start_gunicorn
from werkzeug.serving import make_server

from threefold.core import web
from threefold.core.server_errors import JsonErrorRequestHandler
from threefold.core.web import ApiError, read_json_body, setup_web_app

LIMIT = 1_000
STALL_S = 0.5  # the body read timeout these tests run with; the default is longer
CLIENT_WAIT_S = 20  # how long a client here waits for an answer: a hang fails, never passes

APP_SOURCE = """
from flask import Flask, jsonify
from prometheus_client import CollectorRegistry

from threefold.core import web


def create_app():
    web.BODY_READ_TIMEOUT_S = {stall_s}
    app = Flask(__name__)
    web.setup_web_app(app, name="limits", registry=CollectorRegistry())

    @app.post("/api/echo")
    def echo():
        return jsonify(web.read_json_body(max_bytes={limit}))

    return app
"""


def make_app() -> Flask:
    app = Flask(__name__)
    setup_web_app(app, name="limits", registry=CollectorRegistry())

    @app.post("/api/echo")
    def echo() -> Response:
        return jsonify(read_json_body(max_bytes=LIMIT))

    @app.get("/healthz")
    def health() -> tuple[Response, int]:
        return jsonify(status="degraded", redis="unreachable"), 503

    @app.get("/api/busy")
    def busy() -> tuple[Response, int, dict[str, str]]:
        return jsonify(status="busy"), 503, {"Retry-After": "17"}

    @app.get("/api/outage")
    def outage() -> Response:
        raise ApiError(503, "redis is down", retry_after=9)

    @app.get("/api/page")
    def page() -> tuple[str, int]:
        return "<p>down</p>", 503

    return app


@pytest.fixture
def client():
    return make_app().test_client()


@pytest.fixture
def werkzeug_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A real threaded werkzeug server, as the demo and `threefold <app> serve` run it."""
    monkeypatch.setattr(web, "BODY_READ_TIMEOUT_S", STALL_S, raising=False)
    server = make_server(
        "127.0.0.1", 0, make_app(), threaded=True, request_handler=JsonErrorRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def _start_gunicorn(folder: Path, **env: str) -> tuple[subprocess.Popen, int]:
    """gunicorn with deploy/gunicorn.conf.py (gthread workers) serving the limits app."""
    (folder / "limits_app.py").write_text(APP_SOURCE.format(stall_s=STALL_S, limit=LIMIT))
    gunicorn_dir = str(Path(sys.executable).parent)
    environment = {"PATH": gunicorn_dir, "GUNICORN_ACCESS_LOG": "0", **env}
    return start_gunicorn(
        "limits_app:create_app()", environment, ready_path="/metrics", chdir=folder, timeout_s=30
    )


@pytest.fixture(scope="module")
def gunicorn_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gunicorn as production runs the apps."""
    process, port = _start_gunicorn(tmp_path_factory.mktemp("gunicorn_app"))
    yield port
    process.terminate()
    process.communicate(timeout=30)


def _post_raw(port: int, headers: str, body: bytes = b"", *, keep_open: bool = False) -> tuple:
    """Send a POST to /api/echo byte for byte; the status line, headers and JSON answer.

    `keep_open`: the client sends nothing more but keeps its side open, as a stalled client.
    """
    head = f"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_WAIT_S) as sock:
        sock.sendall(head.encode("latin1") + b"\r\n" + body)
        if not keep_open:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    raw_head, _, raw_body = data.partition(b"\r\n\r\n")
    status, *lines = raw_head.decode("latin1").split("\r\n")
    response_headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return int(status.split()[1]), response_headers, json.loads(raw_body)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.decode("latin1").split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        if name.lower() == "content-length":
            return len(body) >= int(value)
    return False


def _chunks(count: int, size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (size, b" " * size) for _ in range(count))


class _LargeBody(io.RawIOBase):
    """A large request body (8 MB of spaces); counts the bytes the server took from it."""

    def __init__(self, size: int = 8_000_000) -> None:
        self.left = size
        self.taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        size = min(len(buffer), self.left)
        buffer[:size] = b" " * size
        self.left -= size
        self.taken += size
        return size


def test_a_chunked_body_is_read_only_up_to_the_limit(client) -> None:
    body = _LargeBody()
    response = client.post(
        "/api/echo",
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        # What a server that de-chunks the body hands the app.
        environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert f"the limit is {LIMIT}" in response.get_json()["message"]
    assert body.taken <= 64 * 1024  # never the rest: at most one buffer past the limit


@pytest.mark.parametrize("server", ["werkzeug_port", "gunicorn_port"])
def test_an_endless_chunked_body_gets_413_while_the_client_still_sends(server, request) -> None:
    port = request.getfixturevalue(server)
    status, headers, body = _post_raw(
        port, "Transfer-Encoding: chunked\r\n", _chunks(8, 512), keep_open=True
    )
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert body["error"] == "payload_too_large" and body["limit"] == LIMIT


@pytest.mark.parametrize("server", ["werkzeug_port", "gunicorn_port"])
def test_a_chunked_body_within_the_limit_is_accepted(server, request) -> None:
    port = request.getfixturevalue(server)
    payload = b'{"a": 1, "b": "' + b"x" * 300 + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:100], payload[100:]))
    status, _, body = _post_raw(port, "Transfer-Encoding: chunked\r\n", chunked + b"0\r\n\r\n")
    assert status == 200
    assert body == json.loads(payload)


@pytest.mark.parametrize("server", ["werkzeug_port", "gunicorn_port"])
@pytest.mark.parametrize("chunked", [b"ZZ\r\n{}\r\n0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n"])
def test_malformed_chunked_encoding_is_a_400_that_says_so(server, chunked, request) -> None:
    port = request.getfixturevalue(server)
    status, headers, body = _post_raw(port, "Transfer-Encoding: chunked\r\n", chunked)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["error"] == "bad_request"
    assert "chunked encoding is malformed" in body["message"]


@pytest.mark.parametrize("server", ["werkzeug_port", "gunicorn_port"])
def test_a_body_shorter_than_its_content_length_times_out_with_408(server, request) -> None:
    port = request.getfixturevalue(server)
    status, headers, body = _post_raw(port, "Content-Length: 100\r\n", b'{"a": 1', keep_open=True)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert body["error"] == "request_timeout"
    assert "Content-Length" in body["message"]


def test_an_empty_body_says_to_send_a_json_object(client) -> None:
    response = client.post("/api/echo", data=b"", content_type="application/json")
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "request body is empty" in message and "JSON object" in message


def test_a_negative_content_length_is_a_400_that_names_it(werkzeug_port: int) -> None:
    status, _, body = _post_raw(werkzeug_port, "Content-Length: -5\r\n", b"{}")
    assert status == 400
    assert "Content-Length header is '-5'" in body["message"]


def test_405_names_the_allowed_methods_and_keeps_the_allow_header(client) -> None:
    response = client.get("/api/echo")
    assert response.status_code == 405
    assert response.is_json
    assert "POST" in response.headers["Allow"]
    assert (
        "GET is not allowed on /api/echo; allowed: OPTIONS, POST"
        in (response.get_json()["message"])
    )


def test_404_names_the_path_that_was_not_found(client) -> None:
    response = client.get("/api/nowhere")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "not_found",
        "message": "no route for /api/nowhere; check the path and the method",
    }


def test_a_json_503_without_retry_after_gets_the_default(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(web.DEFAULT_RETRY_AFTER_S)
    assert response.get_json()["status"] == "degraded"


@pytest.mark.parametrize(("path", "seconds"), [("/api/busy", "17"), ("/api/outage", "9")])
def test_a_503_keeps_the_retry_after_its_view_set(client, path: str, seconds: str) -> None:
    assert client.get(path).headers["Retry-After"] == seconds


def test_a_503_page_that_is_not_json_is_left_alone(client) -> None:
    assert "Retry-After" not in client.get("/api/page").headers


def test_clients_stalled_mid_headers_do_not_hold_every_gunicorn_thread(tmp_path: Path) -> None:
    """Slowloris: more stalled clients than threads; an ordinary request is still answered."""
    process, port = _start_gunicorn(tmp_path, GUNICORN_THREADS="2", GUNICORN_CLIENT_TIMEOUT="1")
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_WAIT_S) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200"), "a stalled client held the threads"
        for sock in stalled:
            sock.settimeout(CLIENT_WAIT_S)
            assert sock.recv(64) == b"", "the stalled client's connection is closed"
    finally:
        for sock in stalled:
            sock.close()
        process.terminate()
        _, log = process.communicate(timeout=30)
    warnings = [line for line in log.splitlines() if "stalled for 1 s" in line]
    assert warnings and all(json.loads(line)["level"] == "warning" for line in warnings)
    assert "Traceback" not in log
