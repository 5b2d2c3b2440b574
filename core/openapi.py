"""OpenAPI 3 documents of the threefold APIs: small builders, `/openapi.json`, route checks.

Each app describes its API once (`apps/<app>/web/openapi.py`) with the builders here;
`register_openapi` serves it, and `flask_api_routes` / `document_routes` let a test prove that
the document and the Flask routes name the same (method, path) pairs, so neither can drift.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, jsonify

OPENAPI_VERSION = "3.0.3"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code, e.g. bad_request"},
        "message": {"type": "string", "description": "what was expected, what was found, fix"},
    },
    "additionalProperties": True,
}
ERROR_DESCRIPTIONS = {
    308: "a path parameter with '/' made '//': the router redirects to the merged path",
    400: "bad input (the message names the field and the fix)",
    401: "missing bearer token",
    403: "wrong token",
    404: "unknown id",
    405: "a path parameter with '/' reached a route without this method",
    409: "conflict",
    413: "body too large",
    415: "not application/json",
    429: "rate limited (Retry-After header)",
    503: "a dependency is down or the feature is not configured (Retry-After where it helps)",
}
_FLASK_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def path_param(name: str, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def query_param(
    name: str, schema: Mapping[str, Any], description: str = "", *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema),
    }


def operation(
    summary: str,
    *,
    tag: str,
    ok: int = 200,
    also_ok: Iterable[int] = (),
    response: Mapping[str, Any] | None = None,
    media_type: str = "application/json",
    body: Mapping[str, Any] | None = None,
    params: Iterable[Mapping[str, Any]] = (),
    errors: Iterable[int] = (),
    auth: bool = False,
) -> dict[str, Any]:
    """One operation: `response` is the success schema (of `ok` and of each `also_ok` code, e.g.
    a PUT's 201 when it created), `errors` the documented 4xx/5xx codes."""
    success: dict[str, Any] = {"description": "success"}
    if response is not None:
        success["content"] = {media_type: {"schema": dict(response)}}
    params = [dict(p) for p in params]
    # a path parameter holding "/" reaches no route (404), another route's methods (405), or
    # the router's redirect to the path with repeated slashes merged (308)
    by_path = any(p["in"] == "path" for p in params)
    implied = {*((401, 403) if auth else ()), *((400, 413, 415) if body else ())}
    codes = sorted({*errors, *implied, *((308, 404, 405) if by_path else ())})
    responses = {str(code): success for code in (ok, *also_ok)}
    responses.update({str(code): _error_response(code) for code in codes})
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": json_content(body)}
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def _error_response(code: int) -> dict[str, Any]:
    if code < 400:
        return {"description": ERROR_DESCRIPTIONS[code]}
    return {
        "description": ERROR_DESCRIPTIONS.get(code, "error"),
        "content": json_content({"$ref": "#/components/schemas/Error"}),
    }


def openapi_document(
    *,
    title: str,
    version: str,
    description: str,
    paths: Mapping[str, Mapping[str, Any]],
    schemas: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole document; every operation may answer 429 and the shared Error schema."""
    full_paths = {
        path: {
            method: {
                **op,
                "responses": {**op["responses"], "429": _error_response(429)},
            }
            for method, op in ops.items()
        }
        for path, ops in paths.items()
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": full_paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **(schemas or {})},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def register_openapi(app: Flask, document: Mapping[str, Any]) -> None:
    """Serve `document` at GET /openapi.json."""
    blueprint = Blueprint(f"{app.name.replace('.', '_')}_openapi", __name__)

    @blueprint.get("/openapi.json")
    def _openapi() -> Response:
        return jsonify(document)

    app.register_blueprint(blueprint)


def flask_api_routes(app: Flask, prefix: str = "/api/") -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every Flask rule under `prefix` (HEAD/OPTIONS left out)."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = _FLASK_PARAM.sub(r"{\1}", rule.rule)
        routes.update((m, path) for m in rule.methods or () if m.lower() in HTTP_METHODS)
    return routes


def document_routes(document: Mapping[str, Any], prefix: str = "/api/") -> set[tuple[str, str]]:
    """(METHOD, path) of every operation of `document` under `prefix`."""
    return {
        (method.upper(), path)
        for path, ops in document["paths"].items()
        if path.startswith(prefix)
        for method in ops
        if method in HTTP_METHODS
    }
