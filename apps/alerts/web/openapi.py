"""The alerts dashboard's OpenAPI document: keys, series, recent alerts and the live feed."""

from __future__ import annotations

from typing import Any

from threefold.apps.alerts.web.api import (
    FEED_MAX_S,
    FEEDS_PER_CLIENT,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_SERIES_KEYS,
    SERIES_KEYS,
)
from threefold.core.openapi import openapi_document, operation, path_param, query_param

OBJECT = {"type": "object"}
SERIES_KEY = {"type": "string", "pattern": "^(entity|topic):.", "maxLength": MAX_KEY_CHARS}
REDIS_DOWN = (503,)  # every /api route answers 503 + Retry-After while Redis is down
OFFSET = query_param("offset", {"type": "integer", "minimum": 0}, "where the page starts")
SIGNAL_PAGE = [
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
    query_param("cursor", {"type": "string"}, "next_cursor of the page before"),
]


def _analyst(summary: str, **kwargs: Any) -> dict[str, Any]:
    """An analyst operation: bearer analyst token; 503 while none is configured or Redis is down."""
    errors = (*kwargs.pop("errors", ()), 503)
    return operation(summary, tag="signals", auth=True, response=OBJECT, errors=errors, **kwargs)


CORRECTION = {
    "type": "object",
    "required": ["message_id", "task", "label"],
    "properties": {
        "message_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "text_digest": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "the headline's text_digest from GET /api/headlines (SHA-256 of its "
            "text); required when several recent headlines share the message_id",
        },
        "task": {"type": "string", "enum": ["sentiment", "topic"]},
        "label": {"type": "string"},
    },
}
VERDICT = {
    "type": "object",
    "required": ["verdict"],
    "properties": {
        "verdict": {"type": "string", "enum": ["false_alarm", "true_alarm"]},
        "note": {"type": "string", "maxLength": 500},
    },
}

DOCUMENT = openapi_document(
    title="threefold alerts dashboard",
    version="1",
    description="News-sentiment windows and alerts. Errors are JSON: {error, message, ...}.",
    paths={
        "/healthz": {"get": operation("Health (503 while degraded)", tag="ops", errors=(503,))},
        "/api/keys": {
            "get": operation(
                "The aggregated topics and entities, most recent first, a page at a time "
                "({keys, total, next_offset}; next_offset is null on the last page)",
                tag="dashboard",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_KEYS}),
                    OFFSET,
                ],
            )
        },
        "/api/series": {
            "get": operation(
                "Windows of one key or of the most recently updated keys of a kind (exactly one "
                "of key, kind), a page of keys at a time ({series, total, next_offset})",
                tag="dashboard",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[
                    query_param(
                        "key",
                        SERIES_KEY,
                        "KIND:NAME, e.g. topic:legal (NAME printable); an unknown key has no "
                        "windows",
                    ),
                    query_param("kind", {"type": "string", "enum": ["entity", "topic"]}),
                    query_param(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500},
                        "windows per key",
                    ),
                    query_param(
                        "keys",
                        {"type": "integer", "minimum": 1, "maximum": MAX_SERIES_KEYS},
                        f"keys per answer (default {SERIES_KEYS})",
                    ),
                    OFFSET,
                ],
            )
        },
        "/api/alerts": {
            "get": operation(
                "The most recent alerts, newest first",
                tag="dashboard",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
            )
        },
        "/api/alerts/stream": {
            "get": operation(
                "Server-sent events, one `alert` per new alert; resumes from Last-Event-ID. "
                f"Ends after {FEED_MAX_S} s (or timeout) with an `end` event whose data "
                "{resume_from} is the id to reconnect with. 503 + Retry-After also when this "
                f"server's feeds are all in use or the client has {FEEDS_PER_CLIENT} open",
                tag="dashboard",
                media_type="text/event-stream",
                response={"type": "string"},
                errors=(400, *REDIS_DOWN),
                params=[
                    query_param(
                        "since",
                        {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$"},
                        "a stream id (each part at most 2^64-1), or 0 to replay all",
                    ),
                    query_param(
                        "timeout",
                        {"type": "integer", "minimum": 0, "maximum": 86400},
                        f"end the stream sooner than {FEED_MAX_S} s",
                    ),
                ],
            )
        },
        "/api/headlines": {
            "get": operation(
                "The most recently scored headlines with predictions, model versions and "
                "text_digest; with an analyst token, also each one's stored corrections",
                tag="signals",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
            )
        },
        "/api/analyst": {"get": _analyst("The analyst the bearer token belongs to")},
        "/api/corrections": {
            "get": _analyst(
                "One page of the stored corrections, newest first ({corrections, next_cursor})",
                params=SIGNAL_PAGE,
                errors=(400,),
            ),
            "post": _analyst(
                "Correct a scored headline's sentiment or topic",
                ok=201,
                body=CORRECTION,
                errors=(404, 409, 503),
            ),
        },
        "/api/alerts/{alert_id}/verdict": {
            "post": _analyst(
                "Mark an alert a false alarm or a true one",
                ok=201,
                body=VERDICT,
                params=[path_param("alert_id", "from GET /api/alerts")],
                errors=(404, 503),
            )
        },
        "/api/verdicts": {
            "get": _analyst(
                "One page of the stored alert verdicts, newest first ({verdicts, next_cursor}); "
                "with alert_id instead, those alerts' verdicts",
                params=[
                    *SIGNAL_PAGE,
                    {
                        **query_param("alert_id", {"type": "string"}, "up to 100, repeated"),
                        "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                        "explode": True,
                    },
                ],
                errors=(400,),
            )
        },
    },
)
