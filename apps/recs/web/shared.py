"""What every recs blueprint reads: the app's `Resources` and the request helpers they share."""

from __future__ import annotations

from typing import Any

from flask import current_app

from threefold.apps.recs.resources import Resources
from threefold.core.web import ApiError

EXTENSION = "threefold.recs"


def resources() -> Resources:
    """The current app's `Resources`."""
    return current_app.extensions[EXTENSION]


def user_id_arg(raw: str | None) -> str:
    """A stripped `user_id` query value; 400 when missing or longer than 128 characters."""
    if raw is None or not raw.strip():
        raise ApiError(400, "missing query parameter 'user_id'", field="user_id")
    if len(raw) > 128:
        raise ApiError(400, "'user_id' is longer than 128 characters", field="user_id")
    return raw.strip()


def batch(body: dict[str, Any], key: str, limit: int) -> list[Any]:
    """`{key: [...]}` or one bare object -> the list; 400 when empty, 413 above `limit`."""
    raw = body.get(key) if key in body else [body]
    noun = key[:-1]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, f"'{key}' must be a non-empty list of {noun} objects", field=key)
    if len(raw) > limit:
        raise ApiError(413, f"batch has {len(raw)} {key}; the limit is {limit}", limit=limit)
    return raw
