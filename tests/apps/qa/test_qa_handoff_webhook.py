"""The handoff webhook: every attempt of one handoff carries the same `Idempotency-Key`, so a
receiver too slow for `HANDOFF_TIMEOUT_S` can drop the retries of a handoff it already took."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.integration
SLOW_ANSWERS = 2  # the receiver's first answers come after the sender's timeout


@pytest.fixture
def slow_receiver() -> Iterator[tuple[str, list[tuple[str | None, dict]]]]:
    """A helpdesk that takes each handoff but answers its first POSTs too late:
    (url, [(Idempotency-Key header, payload)] in the order received)."""
    received: list[tuple[str | None, dict]] = []
    answered = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            received.append((self.headers.get("Idempotency-Key"), body))
            if len(received) <= SLOW_ANSWERS:
                answered.wait(1.0)  # the sender has given up on this attempt by then
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/handoff", received
    answered.set()
    server.shutdown()
    server.server_close()


def wait_for(received: list, count: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while len(received) < count:
        assert time.monotonic() < deadline, f"{len(received)} POSTs arrived, expected {count}"
        time.sleep(0.05)


def test_every_attempt_of_one_handoff_carries_the_same_idempotency_key(
    make_app, slow_receiver
) -> None:
    url, received = slow_receiver
    client = make_app(handoff_webhook=url, handoff_timeout_s=0.3).test_client()
    asked = {"message": "Can I talk to a real person please?"}
    first = client.post("/api/chat", json=asked).get_json()
    assert first["handoff"] is True
    wait_for(received, SLOW_ANSWERS + 1)  # two timed out, the third answered in time
    keys = {key for key, _ in received}
    assert len(keys) == 1 and None not in keys, keys
    (key,) = keys
    assert first["session_id"] in key
    assert all(payload == received[0][1] for _, payload in received)

    other = client.post("/api/chat", json=asked).get_json()  # another handoff: another key
    wait_for(received, SLOW_ANSWERS + 2)
    assert received[-1][1]["session_id"] == other["session_id"]
    assert received[-1][0] not in (None, key)
