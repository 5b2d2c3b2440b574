"""Live streams (the widget's and the console's event streams, long polls) never take every
server thread: capped per worker and per client, a full server answers 503 + Retry-After."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from support.servers import open_raw_get

from threefold.apps.qa.handoff_events import session_channel
from threefold.apps.qa.resources import EXTENSION_KEY
from threefold.apps.qa.web.event_stream import STREAM_SLOTS
from threefold.core.stream_slots import StreamSlots

pytestmark = pytest.mark.integration
TOKENS = "alice:tok-alice-1-0123456789,bob:tok-bob-2-0123456789"
ALICE = {"Authorization": "Bearer tok-alice-1-0123456789"}
BOB = {"Authorization": "Bearer tok-bob-2-0123456789"}


def _start_session(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/chat",
        data=json.dumps({"message": "Can I talk to a real person please?"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        return json.load(answer)["session_id"]


def test_open_streams_never_take_every_gunicorn_thread(gunicorn_qa) -> None:
    base, _ = gunicorn_qa(GUNICORN_THREADS="4", THREEFOLD_QA_AGENT_TOKENS=TOKENS)
    port = int(base.rsplit(":", 1)[1])
    sid = _start_session(base)
    events = f"/api/sessions/{sid}/events"
    opened = [
        open_raw_get(port, events),  # the widget: its slot
        open_raw_get(port, "/api/agent/events", ALICE),  # alice's console: the last slot
        open_raw_get(port, events),  # as many streams as the worker has threads
        open_raw_get(port, "/api/agent/events", BOB),
    ]
    try:
        statuses = [status for _, status, _, _ in opened]
        assert statuses == ["HTTP/1.1 200 OK"] * 2 + ["HTTP/1.1 503 SERVICE UNAVAILABLE"] * 2
        for _, _, header, body in opened[2:]:
            assert header["retry-after"].isdigit()
            assert json.loads(body)["error"] == "streams_full"
        with pytest.raises(urllib.error.HTTPError) as refused:  # a long poll holds a slot too
            urllib.request.urlopen(f"{base}/api/sessions/{sid}/wait?timeout=1", timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"].isdigit()
        assert json.load(refused.value)["error"] == "streams_full"
        assert _start_session(base)  # POST /api/chat answers
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as health:
            assert health.status == 200
    finally:
        for sock, *_ in opened:
            sock.close()


@pytest.fixture
def app(make_app):
    return make_app(agent_tokens=TOKENS)


def _hand_off(client) -> str:
    reply = client.post("/api/chat", json={"message": "Can I talk to a real person please?"})
    assert reply.get_json()["handoff"] is True
    return reply.get_json()["session_id"]


def _listeners(app, sid: str) -> int:
    """Subscribers of the session's event channel (on the shared Redis)."""
    resources = app.extensions[EXTENSION_KEY]
    channel = f"{resources.config.redis_prefix}events:{session_channel(sid)}"
    return resources.redis.pubsub_numsub(channel)[0][1]


def test_a_client_gets_half_the_slots_and_closed_streams_free_theirs(app) -> None:
    client = app.test_client()
    slots: StreamSlots = app.extensions[STREAM_SLOTS]
    assert (slots.total, slots.per_client) == (6, 3)  # GUNICORN_THREADS' default, 8, less 2
    sid = _hand_off(client)
    streams = [client.get(f"/api/sessions/{sid}/events", buffered=False) for _ in range(3)]
    assert [s.status_code for s in streams] == [200] * 3
    refused = client.get(f"/api/sessions/{sid}/events")
    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    assert refused.get_json()["error"] == "streams_full"
    assert client.get(f"/api/sessions/{sid}/wait?timeout=0.1").status_code == 503
    console = client.get("/api/agent/events", headers=ALICE, buffered=False)
    assert console.status_code == 200  # an agent counts as herself, not as her address
    assert _listeners(app, sid) == 3  # the refused stream's listener is gone
    for stream in (*streams, console):
        stream.close()
    assert slots.in_use() == 0
    assert _listeners(app, sid) == 0
    assert client.get(f"/api/sessions/{sid}/wait?timeout=0.1").status_code == 200
    assert slots.in_use() == 0


def test_head_of_a_stream_frees_its_slot_and_subscription(app) -> None:
    client = app.test_client()
    sid = _hand_off(client)
    response = client.head(f"/api/sessions/{sid}/events")
    assert response.status_code == 200
    response.close()
    assert app.extensions[STREAM_SLOTS].in_use() == 0
    assert _listeners(app, sid) == 0
