"""Catalog items: read and find similar ones; add, replace and delete with the admin token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from threefold.apps.recs.catalog import Item, parse_item
from threefold.apps.recs.web.shared import batch, resources
from threefold.core.audit import audit
from threefold.core.errors import DataError
from threefold.core.query_args import int_arg
from threefold.core.web import ApiError, bearer_token_required, read_json_body

ADMIN_TOKEN_KEY = "THREEFOLD_RECS_ADMIN_TOKEN"  # the setting named in the 503 when unset

ITEMS_PREFIX = "/api/items"
items_api = Blueprint("recs_items", __name__, url_prefix=ITEMS_PREFIX)
# `path:` ids: an item id may hold '/' (an SKU path), sent as is or as %2F; `<id>/similar` of
# such an id still names the similar-items route, so the API stores no id ending in '/similar'


@items_api.before_app_request
def _refuse_an_empty_item_id() -> None:
    """`/api/items//similar` has no id: the router would redirect it to `/api/items/similar`,
    the item called 'similar' (a 308, so a PUT would be repeated there too)."""
    if request.path.startswith(f"{ITEMS_PREFIX}//"):
        raise ApiError(
            404,
            f"the URL {request.path[:100]} holds no item_id: the part after '{ITEMS_PREFIX}/' "
            "is empty; put the id there (an id may hold '/', as is or as %2F)",
            field="item_id",
        )


@items_api.get("/<path:item_id>")
def get_item(item_id: str) -> Any:
    shared = resources()
    shared.catalog_changes.sync()
    item = shared.recommender.catalog.get(item_id)
    if item is None or not shared.recommender.has_item(item_id):
        raise _unknown(item_id)
    return jsonify(item.to_dict())


@items_api.get("/<path:item_id>/similar")
def similar_items(item_id: str) -> Any:
    shared = resources()
    k = int_arg("k", shared.settings.default_k, low=1, high=shared.settings.max_k)
    shared.catalog_changes.sync()
    shared.shared_events.sync()  # events other workers posted: co-occurrence agrees
    if not shared.recommender.has_item(item_id):
        raise _unknown(item_id)
    similar = shared.recommender.similar(item_id, k)
    return jsonify({"item_id": item_id, "items": [r.to_dict() for r in similar]})


def _parse_body_item(values: Any, index: int | None = None) -> Item:
    if not isinstance(values, dict):
        raise ApiError(400, f"item must be an object, found {type(values).__name__}", index=index)
    where = f"item {index}: " if index is not None else ""
    try:
        item = parse_item(values, strict=True)
    except DataError as exc:
        raise ApiError(400, f"{where}{exc}", field=exc.column, index=index) from None
    if (unreachable := _unreadable(item.item_id)) is not None:
        raise ApiError(
            400,
            f"{where}item_id {_shown(item.item_id)} could not be read back: {unreachable}; "
            "choose another item_id",
            field="item_id",
            index=index,
        )
    return item


def _unreadable(item_id: str) -> str | None:
    """Why `GET /api/items/<item_id>` (as is or with %2F) would not answer this item, asking
    the router itself; None when it would."""
    path = f"{ITEMS_PREFIX}/{item_id}"
    try:
        endpoint, args = current_app.url_map.bind("localhost").match(path, method="GET")
    except HTTPException:  # a redirect ('//' merged) or no route
        return f"GET {path[:100]} holds an empty id; an item id may not start with '/'"
    if endpoint == f"{items_api.name}.{get_item.__name__}" and args["item_id"] == item_id:
        return None
    if endpoint == f"{items_api.name}.{similar_items.__name__}":
        return (
            f"GET {path[:100]} names the similar items of {_shown(args['item_id'])} (an item id "
            "may hold '/' but not end in '/similar')"
        )
    return f"GET {path[:100]} reaches {endpoint}, not this item"


@items_api.post("")
@bearer_token_required(ADMIN_TOKEN_KEY)
def add_items() -> Any:
    """One item object or {"items": [...]}; new ids are added, existing ones replaced."""
    shared = resources()
    body = read_json_body(max_bytes=shared.settings.max_body_bytes)
    raw_items = batch(body, "items", shared.settings.max_batch_events)
    items = [_parse_body_item(raw, i) for i, raw in enumerate(raw_items)]
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if (first := first_index.setdefault(item.item_id, index)) != index:
            raise ApiError(
                400,
                f"item {index}: item_id {_shown(item.item_id)} is item {first} of this batch "
                "too; which one to store is unknown: send each item once",
                field="item_id",
                index=index,
            )
    stored = shared.catalog_changes.store(items)
    _audit("items.store", item_ids=[item.item_id for item in items])
    return jsonify(stored), 201


@items_api.put("/<path:item_id>")
@bearer_token_required(ADMIN_TOKEN_KEY)
def replace_item(item_id: str) -> Any:
    shared = resources()
    body = read_json_body(max_bytes=shared.settings.max_body_bytes)
    if body.setdefault("item_id", item_id) != item_id:
        raise ApiError(
            400,
            f"body item_id {body['item_id']!r} does not match the URL's {item_id!r}",
            field="item_id",
        )
    item = _parse_body_item(body)
    if item.item_id != item_id:  # stored trimmed: the URL's id would then be a 404
        raise ApiError(
            400,
            f"the URL's item_id {_shown(item_id)} has spaces around it; it would be stored as "
            f"{_shown(item.item_id)}: PUT to that id",
            field="item_id",
        )
    stored = shared.catalog_changes.store([item])
    _audit("items.replace", item_ids=[item_id])
    return jsonify(stored), 201 if stored["added"] else 200


@items_api.delete("/<path:item_id>")
@bearer_token_required(ADMIN_TOKEN_KEY)
def delete_item(item_id: str) -> Any:
    if not resources().catalog_changes.delete(item_id):
        raise _unknown(item_id)
    _audit("items.delete", item_ids=[item_id])
    return jsonify({"deleted": item_id})


def _shown(item_id: str) -> str:
    """The id for a message: quoted, cut to 80 characters (an id in a URL can be any length)."""
    return repr(item_id) if len(item_id) <= 80 else f"{item_id[:80]!r}... ({len(item_id)} chars)"


def _unknown(item_id: str) -> ApiError:
    return ApiError(404, f"unknown item_id {_shown(item_id)}", field="item_id")


def _audit(action: str, **details: Any) -> None:
    audit(action, store=resources().redis.append_audit, **details)
