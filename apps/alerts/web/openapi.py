"""The alerts dashboard's OpenAPI document: keys, series, recent alerts and the live feed."""

from __future__ import annotations

from typing import Any

from threefold.apps.alerts.web.api import MAX_KEY_CHARS
from threefold.core.openapi import openapi_document, operation, path_param, query_param

OBJECT = {"type": "object"}
SERIES_KEY = {"type": "string", "pattern": "^(entity|topic):.", "maxLength": MAX_KEY_CHARS}
REDIS_DOWN = (503,)  # every /api route answers 503 + Retry-After while Redis is down


def _analyst(summary: str, **kwargs: Any) -> dict[str, Any]:
    """An analyst operation: bearer analyst token; 503 while none is configured or Redis is down."""
    errors = (*kwargs.pop("errors", ()), 503)
    return operation(summary, tag="signals", auth=True, response=OBJECT, errors=errors, **kwargs)


CORRECTION = {
    "type": "object",
    "required": ["message_id", "task", "label"],
    "properties": {
        "message_id": {"type": "string", "minLength": 1, "maxLength": 200},
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
                    query_param(
                        "key",
                        SERIES_KEY,
                        "KIND:NAME, e.g. topic:legal (NAME printable); an unknown key has no "
                        "windows",
                    ),
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
        "/api/headlines": {
            "get": operation(
                "The most recently scored headlines with predictions and model versions",
                tag="signals",
                response=OBJECT,
                errors=(400, *REDIS_DOWN),
                params=[query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
            )
        },
        "/api/analyst": {"get": _analyst("The analyst the bearer token belongs to")},
        "/api/corrections": {
            "get": _analyst("Every stored correction, oldest first"),
            "post": _analyst(
                "Correct a scored headline's sentiment or topic",
                ok=201,
                body=CORRECTION,
                errors=(404, 503),
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
        "/api/verdicts": {"get": _analyst("Every stored alert verdict, oldest first")},
    },
)
