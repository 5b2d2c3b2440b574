"""The alerts dashboard's OpenAPI document: keys, series, recent alerts and the live feed."""

from __future__ import annotations

from threefold.core.openapi import openapi_document, operation, query_param

OBJECT = {"type": "object"}
REDIS_DOWN = (503,)  # every /api route answers 503 + Retry-After while Redis is down

DOCUMENT = openapi_document(
    title="threefold alerts dashboard",
    version="1",
    description="News-sentiment windows and alerts. Errors are JSON: {error, message, ...}.",
    paths={
        "/healthz": {"get": operation("Health (503 while degraded)", tag="ops", errors=(503,))},
        "/api/keys": {
            "get": operation(
                "Every aggregated topic and entity",
                tag="dashboard",
                response=OBJECT,
                errors=REDIS_DOWN,
            )
        },
        "/api/series": {
            "get": operation(
                "Windows of one key or of every key of a kind (exactly one of key, kind)",
                tag="dashboard",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[
                    query_param("key", {"type": "string"}, "KIND:NAME, e.g. topic:legal"),
                    query_param("kind", {"type": "string", "enum": ["entity", "topic"]}),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
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
                "Server-sent events, one per new alert; resumes from Last-Event-ID",
                tag="dashboard",
                media_type="text/event-stream",
                response={"type": "string"},
                errors=(400, *REDIS_DOWN),
                params=[
                    query_param("since", {"type": "string"}, "a stream id, or 0 to replay all"),
                    query_param("timeout", {"type": "integer", "minimum": 0, "maximum": 86400}),
                ],
            )
        },
    },
)
