"""Recommendation lists, the seed log's shoppers and the catalog's categories."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Blueprint, jsonify, request

from threefold.apps.recs.catalog import stored_id
from threefold.apps.recs.impressions import Impression, new_list_id
from threefold.apps.recs.recommender import Ranked, RecommendationList, Recommender
from threefold.apps.recs.resources import Resources
from threefold.apps.recs.rules import Cursor, encode_cursor, read_cursor
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
    cursor_text = request.args.get("cursor")
    cursor: Cursor | None = None
    if cursor_text and request.args.get("offset"):  # which page was meant is unknown
        raise ApiError(
            400,
            f"pass 'cursor' or 'offset', not both (found offset={request.args['offset'][:20]!r} "
            "and a cursor); to follow next_cursor leave offset out",
            field="offset",
        )
    if cursor_text:
        try:
            cursor = read_cursor(cursor_text)
        except ConfigError as exc:
            raise ApiError(400, str(exc), field="cursor") from None
        offset = cursor.offset
        # a forged cursor: no page past the limit `offset` has (a snapshot's last page starts
        # before max_offset + k)
        last = max_offset + (settings.max_k if cursor.snapshot else 0)
        if offset > last:
            raise ApiError(
                400,
                f"cursor {cursor_text!r} points at offset {offset}, past the last page (offset "
                f"{last}); pass next_cursor as is",
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
    # what a snapshot is bound to: a cursor of another user or other filters is not honoured
    binding = {
        "user_id": user_id,
        "variant": str(variant),
        "k": k,
        "category": (category or "").lower(),
        "diversity": f"{diversity:.3f}",
        "exclude_seen": exclude_seen,
    }
    notice: dict[str, str] = {}
    if cursor is not None and cursor.snapshot is not None:
        snapshot = shared.snapshots.get(cursor.snapshot)
        if snapshot is not None and snapshot.get("for") == binding:
            return _continued(shared, recommender, snapshot, cursor, binding, category)
        # ranked anew at the cursor's offset, as an offset cursor is
        notice["cursor"] = "expired" if snapshot is None else "mismatch"
        offset = min(offset, max_offset)
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
        return _served(shared, {**cached, **notice}, cached=True)
    # a first page keeps the list its next pages are cut from: as deep as its candidate pool
    # goes without a bigger one (ranking deeper would cost every first page a larger pool);
    # past that, the pages continue with an offset cursor, ranked anew
    depth = (
        min(max_offset + k, max(k + 1, recommender.candidate_pool // 2 + 1))
        if cursor is None
        else 0
    )
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
        depth=depth,
    )
    if result.ranked and result.next_offset is not None:
        snapshot = {
            "for": binding,
            "model_version": result.model_version,
            "cold_start": result.cold_start,
            "ranked": [[r.item_id, r.score, r.why] for r in result.ranked],
            "complete": len(result.ranked) < depth,  # the whole list, not its first `depth`
        }
        result.next_cursor = encode_cursor(result.next_offset, shared.snapshots.put(snapshot))
    body = {**result.to_dict(), "variant": variant}
    shared.redis.put_recs(user_id, key, body, epoch=epoch)
    shared.metrics.served.labels("cold_start" if result.cold_start else "personal", "no").inc()
    return _served(shared, {**body, **notice}, cached=False)


def _continued(
    shared: Resources,
    recommender: Recommender,
    snapshot: dict[str, Any],
    cursor: Cursor,
    binding: dict[str, Any],
    category: str | None,
) -> Any:
    """The page `cursor` names of the list its snapshot keeps, without the items deleted,
    bought or (with exclude_seen) seen since; the next cursor continues the same list."""
    user_id, exclude_purchased = binding["user_id"], shared.settings.exclude_purchased
    items, next_offset = recommender.page_of(
        user_id,
        shared.histories.get(user_id),
        [Ranked(*entry) for entry in snapshot["ranked"]],
        k=binding["k"],
        offset=cursor.offset,
        category=category,
        exclude_seen=binding["exclude_seen"],
        exclude_purchased=exclude_purchased,
        purchased=shared.histories.purchased(user_id) if exclude_purchased else (),
    )
    next_cursor = None
    if next_offset is not None:
        next_cursor = encode_cursor(next_offset, cursor.snapshot)
    elif not snapshot.get("complete", True):  # past the snapshot: ranked anew from its end
        next_offset = len(snapshot["ranked"])
        next_cursor = encode_cursor(next_offset)
    result = RecommendationList(
        user_id=user_id,
        items=items,
        cold_start=snapshot["cold_start"],
        offset=cursor.offset,
        next_offset=next_offset,
        next_cursor=next_cursor,
        model_version=snapshot["model_version"],
    )
    kind = "cold_start" if result.cold_start else "personal"
    shared.metrics.served.labels(kind, "no").inc()
    body = {**result.to_dict(), "variant": binding["variant"], "cursor": "snapshot"}
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
