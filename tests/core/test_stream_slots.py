"""StreamSlots: event streams capped per process and per client, the slot freed on close."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from threefold.core.stream_slots import (
    StreamSlots,
    server_threads,
    worker_stream_slots,
)
from threefold.core.web import ApiError, client_key


def _endless() -> Iterator[str]:
    while True:
        yield ": keepalive\n\n"


def _app(slots: StreamSlots) -> Flask:
    app = Flask(__name__)
    app.register_error_handler(ApiError, lambda error: error.to_response())

    @app.get("/stream")
    def stream():  # type: ignore[no-untyped-def]
        return slots.open(_endless(), client=client_key())

    return app


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_streams_beyond_the_process_limit_get_a_json_503_until_one_closes() -> None:
    slots = StreamSlots(2, per_client=5)
    client = _app(slots).test_client()
    first, second = (client.get("/stream", **_from(f"10.0.0.{i}")) for i in (1, 2))
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.mimetype == "text/event-stream"
    assert first.headers["Cache-Control"] == "no-cache"
    full = client.get("/stream", **_from("10.0.0.3"))
    assert full.status_code == 503
    assert full.get_json()["error"] == "streams_full"
    assert "already serves 2 live feeds" in full.get_json()["message"]
    assert int(full.headers["Retry-After"]) > 0
    first.close()
    assert slots.in_use() == 1
    assert client.get("/stream", **_from("10.0.0.3")).status_code == 200
    second.close()


def test_one_client_holds_at_most_its_share() -> None:
    slots = StreamSlots(10, per_client=2)
    client = _app(slots).test_client()
    held = [client.get("/stream", **_from("10.0.0.1")) for _ in range(2)]
    refused = client.get("/stream", **_from("10.0.0.1"))
    assert refused.status_code == 503
    assert "this client already has 2 live feeds open" in refused.get_json()["message"]
    other = client.get("/stream", **_from("10.0.0.2"))
    assert other.status_code == 200
    for response in (*held, other):
        response.close()
    assert slots.in_use() == 0


def test_a_stream_closed_before_it_was_read_frees_its_slot() -> None:
    slots = StreamSlots(1, per_client=1)
    client = _app(slots).test_client()
    client.head("/stream").close()  # a HEAD request never reads the body
    response = client.get("/stream")
    assert response.status_code == 200
    response.close()
    response.close()  # closing twice frees one slot, once
    assert slots.in_use() == 0


def test_no_slots_means_every_stream_is_refused() -> None:
    client = _app(StreamSlots(0, per_client=1)).test_client()
    assert client.get("/stream").status_code == 503


def test_a_worker_keeps_two_threads_for_other_requests() -> None:
    assert worker_stream_slots(8) == 6
    assert worker_stream_slots(3) == worker_stream_slots(2) == 1  # one stream, one other thread
    assert worker_stream_slots(1) == 0  # said in a warning
    assert server_threads({"GUNICORN_THREADS": "16"}) == 16
    assert server_threads({}) == 8
    with pytest.raises(ValueError, match="per_client >= 1, found 4 and 0"):
        StreamSlots(4, per_client=0)


def test_hold_takes_a_slot_for_the_block_and_frees_it() -> None:
    slots = StreamSlots(1, per_client=1)
    with slots.hold("a"):
        assert slots.in_use() == 1
        with pytest.raises(ApiError) as refused, slots.hold("b"):
            pass
        assert refused.value.status == 503
    assert slots.in_use() == 0
