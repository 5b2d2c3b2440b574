"""What every recs blueprint reads: the app's `Resources` and the request helpers they share."""

from __future__ import annotations

from typing import Any

from flask import current_app

from threefold.apps.recs.catalog import stored_id
from threefold.apps.recs.resources import Resources
from threefold.core.errors import DataError
from threefold.core.web import ApiError

EXTENSION = "threefold.recs"


def resources() -> Resources:
    """The current app's `Resources`."""
    return current_app.extensions[EXTENSION]


def user_id_arg(raw: str | None) -> str:
    """The `user_id` query value as events store it (`stored_id`: trimmed, not normalized, so a
    history stored under a decomposed spelling is found); 400 when missing or not an id a posted
    event could have."""
    if raw is None or not raw.strip():
        raise ApiError(400, "missing query parameter 'user_id'", field="user_id")
    try:
        return stored_id("user_id", raw, checked=True)
    except DataError as exc:
        raise ApiError(400, str(exc), field="user_id") from None


def batch(body: dict[str, Any], key: str, limit: int) -> list[Any]:
    """`{key: [...]}` or one bare object -> the list; 400 when empty or when other keys stand
    beside `key` (they would be ignored), 413 above `limit`."""
    noun = key[:-1]
    if key in body and (unknown := sorted(set(body) - {key})):
        raise ApiError(
            400,
            f"unknown top-level key(s) {unknown} next to {key!r}; a batch body holds only "
            f"{key!r} (or send one {noun} object on its own)",
            field=unknown[0],
            unknown=unknown,
            allowed=[key],
        )
    raw = body.get(key) if key in body else [body]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, f"'{key}' must be a non-empty list of {noun} objects", field=key)
    if len(raw) > limit:
        raise ApiError(413, f"batch has {len(raw)} {key}; the limit is {limit}", limit=limit)
    return raw
