"""The hub's OpenAPI document: its one JSON route, the apps' base URLs."""

from __future__ import annotations

from threefold.core.openapi import openapi_document, operation

DOCUMENT = openapi_document(
    title="threefold demo hub",
    version="1",
    description="The demo's entry page; its API tells the pages where the three apps are.",
    paths={
        "/healthz": {
            "get": operation(
                "Health (503 while the demo's alerts consumer is down)", tag="ops", errors=(503,)
            )
        },
        "/api/links": {
            "get": operation(
                "The apps' base URLs as this client should use them",
                tag="hub",
                response={"type": "object", "additionalProperties": {"type": "string"}},
            )
        },
    },
)
