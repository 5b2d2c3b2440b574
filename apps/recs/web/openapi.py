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
# null or "" is no type given; two keys naming different types are a 400 (not expressible here)
EVENT_TYPE = {
    "type": "string",
    "nullable": True,
    "enum": [*EVENT_TYPES, "", None],
    "description": 'lowercase, as listed (`CLICK` is a 400); null or "": not given',
}
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
        "event": {**EVENT_TYPE, "default": "view"},
        "type": {
            **EVENT_TYPE,
            "description": f"older name of `event`, {EVENT_TYPE['description']}; with both, "
            "they must name the same type (else a 400)",
        },
        "timestamp": {
            "oneOf": [
                {"type": "number", "minimum": 0, "description": "unix seconds"},
                {"type": "string", "format": "date-time", "description": "ISO 8601"},
            ],
            "description": "when it happened (default: when it is accepted); at most 5 min "
            "ahead, not before 1970-01-01T00:00:00Z",
        },
        "rating": {"type": "number"},
        "list_id": {
            "type": "string",
            "nullable": True,
            "pattern": "^[A-Za-z0-9_-]{1,64}$",
            "description": "the list_id of the recommendation list the item was picked from "
            "(null: none)",
        },
        "event_id": {
            "type": "string",
            "nullable": True,
            "pattern": "^[A-Za-z0-9_.:-]{1,128}$",
            "description": "the client's id of the event: a retry with the same id counts once "
            "(null: none)",
        },
    },
}
ITEM_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "stripped, otherwise kept as given (not normalized), as user ids; "
    f"refused: {REFUSED_ID_CHARACTERS}, and ids GET /api/items/{{item_id}} would not reach (one "
    "ending in '/similar', the similar items of what precedes it, or starting with '/'); an "
    "item already stored under such an id is still read and deleted",
}
VISIBLE = "\\S"  # holds something besides spaces (ECMA regex, matched anywhere)
SHOWN = (
    "at least one visible character (a letter, digit, punctuation mark or symbol; one made only "
    "of zero-width or other invisible characters is refused)"
)
ITEM_BODY = {
    "type": "object",
    "required": ["item_id", "title", "description", "category"],
    "additionalProperties": False,
    "properties": {
        "item_id": ITEM_ID,
        "title": {
            "type": "string",
            "maxLength": MAX_TEXT_LENGTH,
            "pattern": VISIBLE,
            "description": SHOWN,
        },
        "description": {
            "type": "string",
            "maxLength": MAX_TEXT_LENGTH,
            "description": "may be empty",
        },
        "category": {
            "type": "string",
            "maxLength": MAX_TEXT_LENGTH,
            "pattern": "[^\\s|]",
            "description": f"one name, or several joined by '|'; each with {SHOWN}",
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
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "items": ITEM_BODY,
                    "description": "each item_id once (400 naming one sent twice)",
                }
            },
        },
    ]
}
CURSOR = (
    "the previous page's next_cursor, unchanged, with the same user_id, k, category, diversity "
    "and exclude_seen; not with offset. It continues the list the first page was cut from (a "
    "snapshot kept 15 minutes), less items deleted, bought or seen since: the response says "
    "cursor=snapshot. A snapshot gone (cursor=expired) or of other parameters (cursor=mismatch) "
    "gets the page ranked anew at the cursor's offset"
)
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
                    query_param("cursor", {"type": "string"}, CURSOR),
                    query_param("diversity", {"type": "number", "minimum": 0, "maximum": 1}),
                    query_param("exclude_seen", {"type": "boolean"}),
                    query_param("category", {"type": "string"}),
                ],
            )
        },
        "/api/users": {
            "get": operation(
                "The demo shoppers for the storefront's picker: the seed log's users the id rule "
                "accepts, sorted (the same on every worker; posted user ids are never listed)",
                tag="recommendations",
                params=[LIMIT],
                response={
                    "type": "object",
                    "properties": {"users": {"type": "array", "items": {"type": "string"}}},
                },
                errors=(400,),
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
