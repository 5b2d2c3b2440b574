"""The recs service's /openapi.json lists exactly the Flask routes under /api/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from threefold.apps.recs.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes, flask_api_routes


def test_openapi_document_matches_the_api_routes(make_app) -> None:
    app = make_app()
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT
    assert document_routes(DOCUMENT) == flask_api_routes(app)


def schema_errors(schema: dict[str, Any], value: Any, where: str = "body") -> list[str]:
    """Why `value` does not follow `schema` (the JSON-schema subset the threefold documents use:
    nullable, oneOf, type, enum, lengths, bounds, pattern, required, properties,
    additionalProperties, items, minItems); [] when it does."""
    if value is None and schema.get("nullable"):
        return []
    if "oneOf" in schema:
        fits = [s for s in schema["oneOf"] if not schema_errors(s, value, where)]
        return [] if len(fits) == 1 else [f"{where}: fits {len(fits)} of oneOf"]
    kind = schema.get("type")
    python_types = {
        "string": str,
        "number": (int, float),
        "integer": int,
        "boolean": bool,
        "array": list,
        "object": dict,
    }
    if kind and (
        not isinstance(value, python_types[kind])
        or (isinstance(value, bool) and kind in ("number", "integer"))
    ):
        return [f"{where}: not a {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            errors.append(f"{where}: length {len(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(value, int | float) and value < schema.get("minimum", float("-inf")):
        errors.append(f"{where}: below {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        for n, item in enumerate(value):
            errors += schema_errors(schema.get("items", {}), item, f"{where}[{n}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{where}: lacks {k!r}" for k in schema.get("required", ()) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unknown {k!r}" for k in value if k not in properties]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(properties[key], item, f"{where}.{key}")
    return errors


BOOK = {"title": "Dune", "description": "Desert planet.", "category": "Books"}
VIEW = {"user_id": "shopper", "item_id": "bk-002"}


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("put", "/api/items/spec-new", BOOK),  # the id is the URL's
        ("put", "/api/items/spec-same", {**BOOK, "item_id": "spec-same"}),
        ("put", "/api/items/spec-blank", {**BOOK, "title": ""}),
        ("post", "/api/items", {**BOOK, "item_id": "spec-post"}),
        ("post", "/api/items", BOOK),
        ("post", "/api/items", {**BOOK, "item_id": "spec-x", "title": "  "}),
        ("post", "/api/items", {**BOOK, "item_id": "spec-x", "category": "|"}),
        ("post", "/api/items", {**BOOK, "item_id": "spec-x", "price": -1}),
        ("post", "/api/items", {**BOOK, "item_id": "spec-x", "titel": "typo"}),
        ("post", "/api/events", VIEW),
        ("post", "/api/events", {**VIEW, "timestamp": 1_700_000_000}),
        ("post", "/api/events", {**VIEW, "timestamp": "2023-11-14T22:13:20Z"}),
        ("post", "/api/events", {**VIEW, "event": "purchase", "rating": 4.5}),
        ("post", "/api/events", {"events": [VIEW, {**VIEW, "type": "click"}]}),
        ("post", "/api/events", {"item_id": "bk-002"}),
        ("post", "/api/events", {**VIEW, "evnt": "click"}),
        ("post", "/api/events", {**VIEW, "list_id": "not a list id"}),
        ("post", "/api/events", {**VIEW, "list_id": ""}),
        ("post", "/api/events", {**VIEW, "list_id": None}),
        ("post", "/api/events", {**VIEW, "event_id": ""}),
        ("post", "/api/events", {**VIEW, "event_id": None}),
        ("post", "/api/events", {**VIEW, "event": None, "type": "purchase"}),
        ("post", "/api/events", {**VIEW, "event": "", "type": "click"}),
        ("post", "/api/events", {**VIEW, "event": "CLICK"}),
        ("post", "/api/events", {**VIEW, "type": "Purchase"}),
        ("post", "/api/events", {**VIEW, "timestamp": -1}),
        ("post", "/api/events", {**VIEW, "timestamp": 0}),
    ],
)
def test_the_request_body_schemas_accept_what_the_server_accepts(
    make_app, admin_headers, method: str, url: str, body: dict[str, Any]
) -> None:
    """A body the document allows is taken, and one it refuses is a 400, so a client
    generated from /openapi.json neither sends what the server refuses nor is kept from
    sending what it takes (a PUT's `item_id` is the URL's: the body may leave it out)."""
    response = make_app().test_client().open(url, method=method, json=body, headers=admin_headers)
    path = "/api/items/{item_id}" if url.startswith("/api/items/") else url
    schema = DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]
    errors = schema_errors(schema["schema"], body)
    assert response.status_code in (200, 201, 202, 400), response.get_json()
    assert (response.status_code != 400) == (not errors), (response.get_json(), errors)
