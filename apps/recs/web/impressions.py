"""The per-model-version click-through readout of the impressions log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from threefold.apps.recs.web.shared import resources
from threefold.core.web import ApiError

impressions_api = Blueprint("recs_impressions", __name__, url_prefix="/api")
RETRY_AFTER_S = 5


@impressions_api.get("/impressions/ctr")
def click_through() -> Any:
    """Lists served, items shown, attributed clicks/purchases and CTR per model version."""
    shared = resources()
    versions = shared.impressions.readout()
    if versions is None:
        raise ApiError(
            503,
            f"the impressions store (Redis) is unavailable; try again in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        )
    return jsonify({"model_version": shared.model_version, "versions": versions})
