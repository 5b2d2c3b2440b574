"""Posting user events (views, clicks, purchases)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from threefold.apps.recs.events import Event, parse_event
from threefold.apps.recs.web.shared import batch, resources
from threefold.core.errors import DataError
from threefold.core.web import ApiError, read_json_body

events_api = Blueprint("recs_events", __name__, url_prefix="/api")
SPOOL_RETRY_AFTER_S = 5


@events_api.post("/events")
def post_events() -> Any:
    """One event object, or {"events": [...]}; all are validated before any is stored. An
    event whose `event_id` was posted before (a client's retry) is counted in `duplicates`
    and not stored again.

    202 means kept: in Redis (`shared: true`) or, while Redis is down, in this worker and the
    fsync'd spool that is replayed to Redis when it returns (`shared: false`). A post of only
    duplicates stores nothing: `shared` then says whether all this worker accepted is in Redis.
    """
    shared = resources()
    body = read_json_body(max_bytes=shared.settings.max_body_bytes)
    raw_events = batch(body, "events", shared.settings.max_batch_events)
    recommender = shared.recommender
    parsed: list[Event] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise ApiError(
                400, f"event {index} must be an object, found {type(raw).__name__}", index=index
            )
        item_id = raw.get("item_id")
        try:
            event = parse_event(raw)
        except DataError as exc:
            raise ApiError(400, f"event {index}: {exc}", field=exc.column, index=index) from None
        if not recommender.has_item(event.item_id):
            raise ApiError(
                422,
                f"event {index}: unknown item_id {item_id!r}; it is not in the catalog "
                "(add it with POST /api/items first)",
                code="unknown_item",
                field="item_id",
                index=index,
                item_id=event.item_id,
            )
        parsed.append(event)
    fresh = shared.event_ids.first_seen(parsed)  # a retried post (same event_id) counts once
    duplicates = len(parsed) - len(fresh)
    parsed = fresh
    try:
        stored_in_redis = (
            shared.histories.record(parsed) if parsed else shared.histories.all_shared()
        )
    except OSError as exc:  # Redis down and the spool disk refused: nothing was accepted
        raise ApiError(
            503,
            f"events not stored: Redis is unavailable and the local spool failed ({exc.strerror})"
            f"; send them again in {SPOOL_RETRY_AFTER_S} s",
            retry_after=SPOOL_RETRY_AFTER_S,
        ) from None
    if parsed:  # every worker counts them from the shared log; spooled ones are counted here now
        shared.shared_events.counted(parsed, shared=stored_in_redis)
    shared.redis.invalidate(e.user_id for e in parsed)
    for event in parsed:
        shared.metrics.events.labels(event.event).inc()
    return jsonify(
        {
            "accepted": len(parsed),
            "duplicates": duplicates,
            "users": sorted({e.user_id for e in parsed}),
            "shared": stored_in_redis,
        }
    ), 202
