"""Recommendation lists, the seed log's shoppers and the catalog's categories."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Blueprint, jsonify, request

from threefold.apps.recs.catalog import stored_id
from threefold.apps.recs.impressions import Impression, new_list_id
from threefold.apps.recs.resources import Resources
from threefold.apps.recs.rules import decode_cursor
from threefold.apps.recs.web.shared import resources, user_id_arg
from threefold.core.errors import ConfigError, DataError
from threefold.core.query_args import bool_arg, float_arg, int_arg
from threefold.core.web import ApiError

recommendations = Blueprint("recs_recommendations", __name__, url_prefix="/api")


@recommendations.get("/recommendations")
def get_recommendations() -> Any:
    shared = resources()
    settings = shared.settings
    user_id = user_id_arg(request.args.get("user_id"))
    k = int_arg("k", settings.default_k, low=1, high=settings.max_k)
    max_offset = 10 * settings.max_k
    offset = int_arg("offset", 0, low=0, high=max_offset)
    cursor = request.args.get("cursor")
    if cursor and request.args.get("offset"):  # which page was meant is unknown
        raise ApiError(
            400,
            f"pass 'cursor' or 'offset', not both (found offset={request.args['offset'][:20]!r} "
            "and a cursor); to follow next_cursor leave offset out",
            field="offset",
        )
    if cursor:
        try:
            offset = decode_cursor(cursor)
        except ConfigError as exc:
            raise ApiError(400, str(exc), field="cursor") from None
        if offset > max_offset:  # a forged cursor: no page past the limit `offset` has
            raise ApiError(
                400,
                f"cursor {cursor!r} points at offset {offset}, past the last page (offset "
                f"{max_offset}); pass next_cursor as is",
                field="cursor",
            )
    diversity = float_arg("diversity", settings.default_diversity, low=0.0, high=1.0)
    exclude_seen = bool_arg("exclude_seen", settings.exclude_seen)
    category = (request.args.get("category") or "").strip() or None
    variant, recommender = shared.recommender_for(user_id)
    categories = recommender.catalog.categories
    if category and not any(c.lower() == category.lower() for c in categories):
        raise ApiError(
            400, f"unknown category {category!r}; expected one of {categories}", field="category"
        )
    shared.catalog_changes.sync()
    shared.shared_events.sync()  # events other workers posted: popular/trending agree
    # A/B variant and ranker version are part of the key: after a swap or a change of variant
    # no list of another ranker is served
    key = (
        f"a{variant}|m{recommender.model_version}|v{shared.catalog_changes.version}|k{k}"
        f"|o{offset}|c{(category or '').lower()}|d{diversity:.3f}|x{int(exclude_seen)}"
    )
    # the epoch keeps a list ranked from a history older than the user's latest event (which
    # invalidated the cache meanwhile) out of the cache's answers
    cached, epoch = shared.redis.lookup_recs(user_id, key)
    if cached is not None:
        kind = "cold_start" if cached["cold_start"] else "personal"
        shared.metrics.served.labels(kind, "yes").inc()
        return _served(shared, cached, cached=True)
    result = recommender.recommend(
        user_id,
        shared.histories.get(user_id),
        k=k,
        offset=offset,
        category=category,
        diversity=diversity,
        exclude_seen=exclude_seen,
        exclude_purchased=settings.exclude_purchased,
        purchased=shared.histories.purchased(user_id) if settings.exclude_purchased else (),
    )
    body = {**result.to_dict(), "variant": variant}
    shared.redis.put_recs(user_id, key, body, epoch=epoch)
    shared.metrics.served.labels("cold_start" if result.cold_start else "personal", "no").inc()
    return _served(shared, body, cached=False)


def _served(shared: Resources, body: dict[str, Any], *, cached: bool) -> Any:
    """The response, with a fresh `list_id` (clicks send it back) logged as an impression."""
    list_id = new_list_id()
    shared.impressions.record(Impression.of(body, list_id))
    return jsonify({**body, "list_id": list_id, "cached": cached})


@recommendations.get("/users")
def list_users() -> Any:
    """The demo shoppers for the storefront's user picker: the seed log's users (the same on
    every worker; a posted user id is never listed, so no client can put a name into the
    picker and customers' ids stay private), only those the id rule accepts: a seed log's id
    that it refuses counts for statistics, but every request for it is a 400."""
    limit = int_arg("limit", 50, low=1, high=1000)
    users = (u for u in resources().histories.known_users if _servable_user(u))
    return jsonify({"users": list(itertools.islice(users, limit))})


def _servable_user(user_id: str) -> bool:
    try:
        stored_id("user_id", user_id, checked=True)
    except DataError:
        return False
    return True


@recommendations.get("/categories")
def list_categories() -> Any:
    return jsonify({"categories": resources().recommender.catalog.categories})
