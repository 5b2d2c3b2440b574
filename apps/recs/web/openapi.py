"""The recommendation service's OpenAPI document: recommendations, events, items."""

from __future__ import annotations

from typing import Any

from threefold.apps.recs.catalog import MAX_TEXT_LENGTH
from threefold.core.openapi import openapi_document, operation, path_param, query_param

ITEM = path_param("item_id", "a catalog item id")
OBJECT = {"type": "object"}
REFUSED_ID_CHARACTERS = (
    "control and format characters (NUL, tab, bidi controls, zero-width spaces and joiners), "
    "spaces other than ' ', private-use characters, blank fillers, and ids with nothing visible"
)
USER_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "stripped, otherwise kept as given: not normalized, so a composed and a "
    "decomposed spelling (`ren\\u00e9e`, `rene\\u0301e`) are two users, as histories were always "
    f'stored; a JSON number is refused (send "5"), and so are {REFUSED_ID_CHARACTERS}',
}
EVENT_TYPES = ["click", "purchase", "view"]
EVENT = {
    "type": "object",
    "required": ["user_id", "item_id"],
    "additionalProperties": False,
    "properties": {
        "user_id": USER_ID,
        "item_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "a catalog item id, as the catalog holds it (422 when unknown)",
        },
        "event": {"type": "string", "enum": EVENT_TYPES, "default": "view"},
        "type": {"type": "string", "enum": EVENT_TYPES, "description": "older name of `event`"},
        "timestamp": {
            "oneOf": [
                {"type": "number", "description": "unix seconds"},
                {"type": "string", "format": "date-time", "description": "ISO 8601"},
            ],
            "description": "when it happened (default: when it is accepted); at most 5 min ahead",
        },
        "rating": {"type": "number"},
        "list_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{1,64}$",
            "description": "the list_id of the recommendation list the item was picked from",
        },
        "event_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:-]{1,128}$",
            "description": "the client's id of the event: a retry with the same id counts once",
        },
    },
}
ITEM_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "stripped, otherwise kept as given (not normalized), as user ids; "
    f"refused: {REFUSED_ID_CHARACTERS} (an item already stored under such an id is "
    "still read and deleted)",
}
VISIBLE = "\\S"  # holds something besides spaces (ECMA regex, matched anywhere)
ITEM_BODY = {
    "type": "object",
    "required": ["item_id", "title", "description", "category"],
    "additionalProperties": False,
    "properties": {
        "item_id": ITEM_ID,
        "title": {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": VISIBLE},
        "description": {
            "type": "string",
            "maxLength": MAX_TEXT_LENGTH,
            "description": "may be empty",
        },
        "category": {
            "type": "string",
            "maxLength": MAX_TEXT_LENGTH,
            "pattern": "[^\\s|]",
            "description": "one name, or several joined by '|'",
        },
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object"},
    },
}
# PUT /api/items/{item_id}: the id is the URL's; a body may repeat it (then it must match)
PUT_ITEM_BODY = {
    **ITEM_BODY,
    "required": ["title", "description", "category"],
    "properties": {
        **ITEM_BODY["properties"],
        "item_id": {**ITEM_ID, "description": "optional: the URL's item_id (400 when another)"},
    },
}
ITEMS_BODY = {
    "oneOf": [
        ITEM_BODY,
        {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {"items": {"type": "array", "minItems": 1, "items": ITEM_BODY}},
        },
    ]
}
LIMIT = query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
K = query_param("k", {"type": "integer", "minimum": 1}, "how many (at most the configured max_k)")


def _admin(summary: str, **kwargs: Any) -> dict[str, Any]:
    """A catalog change: bearer admin token; 503 while no token is configured."""
    return operation(summary, tag="items", auth=True, errors=(404, 503), **kwargs)


DOCUMENT = openapi_document(
    title="threefold recommendations",
    version="1",
    description="Text-based recommendations. Errors are JSON: {error, message, ...}.",
    paths={
        "/healthz": {"get": operation("Health (503 while degraded)", tag="ops", errors=(503,))},
        "/api/recommendations": {
            "get": operation(
                "Recommendations for a user (cold start without a history)",
                tag="recommendations",
                response=OBJECT,
                errors=(400,),
                params=[
                    query_param("user_id", USER_ID, required=True),
                    K,
                    query_param("offset", {"type": "integer", "minimum": 0}, "not with cursor"),
                    query_param("cursor", {"type": "string"}, "next_cursor; not with offset"),
                    query_param("diversity", {"type": "number", "minimum": 0, "maximum": 1}),
                    query_param("exclude_seen", {"type": "boolean"}),
                    query_param("category", {"type": "string"}),
                ],
            )
        },
        "/api/users": {
            "get": operation(
                "Users with a history", tag="recommendations", params=[LIMIT], errors=(400,)
            )
        },
        "/api/categories": {"get": operation("The catalog's categories", tag="recommendations")},
        "/api/impressions/ctr": {
            "get": operation(
                "Lists served, items shown, attributed clicks and CTR per model version",
                tag="recommendations",
                response=OBJECT,
                errors=(503,),
            )
        },
        "/api/ab": {
            "get": operation(
                "The A/B test: variants, bucket ranges, serving versions, counts vs control",
                tag="recommendations",
                response=OBJECT,
                errors=(400,),
                params=[query_param("user_id", USER_ID, "show this user's variant")],
            )
        },
        "/api/events": {
            "post": operation(
                "Record one event or {events: [...]}; 202 means kept",
                tag="events",
                ok=202,
                response=OBJECT,
                errors=(422, 503),
                body={
                    "oneOf": [
                        EVENT,
                        {
                            "type": "object",
                            "required": ["events"],
                            "additionalProperties": False,
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": EVENT,
                                }
                            },
                        },
                    ]
                },
            )
        },
        "/api/items": {
            "post": _admin("Add or replace items (one or {items: [...]})", ok=201, body=ITEMS_BODY)
        },
        "/api/items/{item_id}": {
            "get": operation(
                "One item", tag="items", params=[ITEM], response=OBJECT, errors=(404,)
            ),
            "put": _admin(
                "Replace one item (201 when the id was new)",
                params=[ITEM],
                body=PUT_ITEM_BODY,
                response=OBJECT,
                also_ok=(201,),
            ),
            "delete": _admin("Delete one item", params=[ITEM], response=OBJECT),
        },
        "/api/items/{item_id}/similar": {
            "get": operation(
                "Items similar to this one",
                tag="items",
                params=[ITEM, K],
                response=OBJECT,
                errors=(400, 404),
            )
        },
    },
)
