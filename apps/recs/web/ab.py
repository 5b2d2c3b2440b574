"""The A/B test as this worker serves it: variants, buckets, versions, a user's variant, counts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from threefold.apps.recs.ab_buckets import bucket_of, served_label
from threefold.apps.recs.ab_report import ab_report
from threefold.apps.recs.web.shared import resources, user_id_arg

ab_api = Blueprint("recs_ab", __name__, url_prefix="/api")


@ab_api.get("/ab")
def experiment() -> Any:
    """Variants with their bucket ranges and serving versions; `fallbacks` the pinned variants
    the control serves (variant -> why); `?user_id=` shows that user's bucket and variant (as
    its lists are labelled); `report` is `threefold recs ab-report` (null while Redis is down)."""
    shared = resources()
    body: dict[str, Any] = shared.experiment.to_dict()
    for row in body["variants"]:
        row["model_version"] = shared.recommender_for_variant(row["variant"]).model_version
    if "user_id" in request.args:
        user_id = user_id_arg(request.args.get("user_id"))
        variant = served_label(shared.experiment.assign(user_id), shared.fallbacks)
        bucket = bucket_of(shared.experiment.salt, user_id)
        body["user"] = {"user_id": user_id, "bucket": bucket, "variant": variant}
    body["fallbacks"] = shared.fallbacks
    counts = shared.impressions.ab_counts()
    body["report"] = None if counts is None else ab_report(counts, fallbacks=shared.fallbacks)
    return jsonify(body)
