"""Server-sent events from the handoff event bus (the console's queue, a customer's widget)."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Response

from threefold.apps.qa.handoff_events import EventBus

STREAM_SECONDS = 25.0  # then the browser reconnects (EventSource does so by itself)
RETRY_MS = 1000


def sse_response(
    bus: EventBus, channels: list[str], *, seconds: float = STREAM_SECONDS
) -> Response:
    """A `text/event-stream` of the bus events on `channels`, with keep-alive comments."""
    listener = bus.listen(channels, seconds=seconds)
    next(listener)  # subscribed before the response starts

    def generate():  # type: ignore[no-untyped-def]
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        try:
            for event in listener:
                if event is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n"
        finally:
            listener.close()

    return Response(
        generate(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
