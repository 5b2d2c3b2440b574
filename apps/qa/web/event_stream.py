"""Live updates from the handoff event bus (the console's queue, a customer's widget): server-sent
events and long polls, each holding one of the worker's live slots while it is open.

Each one holds a server thread (gunicorn's gthread worker has GUNICORN_THREADS per process), so a
worker serves at most its threads less two at once (`core.stream_slots`), and a client at most
half of them: a customer counts as their address, which many customers share behind a NAT (an
office, a mobile carrier), so no single address may take every slot, but one address still gets
several; an agent counts as herself, so a team behind one office address is limited only by the
total. Beyond that the answer is 503 `streams_full` + Retry-After (JSON), and the widget and the
console refresh instead and try again later; the chat, the console's actions and /healthz always
have the two threads left over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager

from flask import Response, current_app

from threefold.apps.qa.handoff_events import EventBus
from threefold.core.stream_slots import StreamSlots, server_threads, worker_stream_slots

STREAM_SECONDS = 25.0  # then the browser reconnects (EventSource does so by itself)
RETRY_MS = 1000
STREAM_SLOTS = "threefold.qa.stream_slots"  # app.extensions key of the live slots


def live_slots(environ: Mapping[str, str]) -> StreamSlots:
    """The live slots of one worker: its threads (GUNICORN_THREADS) less two, half per client."""
    total = worker_stream_slots(server_threads(environ))
    return StreamSlots(
        total,
        per_client=max(1, (total + 1) // 2),
        what="live connections (event streams and long polls)",
    )


def _slots() -> StreamSlots:
    return current_app.extensions[STREAM_SLOTS]


def sse_response(
    bus: EventBus, channels: list[str], *, client: str, seconds: float = STREAM_SECONDS
) -> Response:
    """A `text/event-stream` of the bus events on `channels`, with keep-alive comments, holding
    one of `client`'s live slots until it is closed (503 `streams_full` when none is left)."""
    listener = bus.listen(channels, seconds=seconds)
    next(listener)  # subscribed before the response starts

    def generate() -> Iterator[str]:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        for event in listener:
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n"

    try:
        response = _slots().open(generate(), client=client)
    except BaseException:
        listener.close()
        raise
    # closed with the response, also when the body is never read (HEAD) or started
    response.call_on_close(listener.close)
    return response


def live_slot(client: str) -> AbstractContextManager[None]:
    """Hold one of `client`'s live slots (for a long poll); 503 `streams_full` when none is left."""
    return _slots().hold(client)


def first_event(
    bus: EventBus,
    channels: list[str],
    *,
    seconds: float,
    stale: Callable[[], bool] = lambda: False,
) -> dict | None:
    """Long polling: the first event on `channels` within `seconds`, or None.

    `stale()` is asked once the subscription is in place: True (the client missed something
    published before it) returns None at once instead of waiting, so the client resyncs.
    """
    listener = bus.listen(channels, seconds=seconds, tick_s=min(1.0, seconds))
    next(listener)
    try:
        if stale():
            return None
        return next((event for event in listener if event is not None), None)
    finally:
        listener.close()
