"""Preparation once, then workers that only load: vectors and the tuned combiner from Redis."""

from __future__ import annotations

import logging

import pytest

from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.resources import open_resources, prepare_recs
from threefold.apps.recs.web import create_app
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration


def test_a_worker_opened_after_prepare_embeds_nothing_and_serves_the_tuned_combiner(
    embedder, redis_url, redis_prefix, caplog
):
    settings = RecsConfig(redis_prefix=redis_prefix)
    redis = RedisSettings(url=redis_url)
    tuned = prepare_recs(settings, redis, encoder=embedder)
    assert tuned is not None
    assert tuned.validation

    with caplog.at_level(logging.INFO, logger="threefold.apps.recs.resources"):
        resources = open_resources(settings, redis, encoder=embedder)
    assert "0 embedded by this worker" in caplog.text
    assert resources.recommender.combiner.to_dict() == tuned.combiner.to_dict()

    health = create_app(settings, resources).test_client().get("/healthz")
    assert health.status_code == 200
    assert health.json["status"] == "ok"
    assert health.json["redis"] == "up"
    assert health.json["ranker"]["validation"] == tuned.validation


def test_the_statistics_refresh_interval_reaches_the_recommender(embedder):
    settings = RecsConfig(tune_on_start=False, stats_refresh_seconds=30.0)
    resources = open_resources(settings, RedisSettings(), encoder=embedder)
    assert resources.recommender.stats_refresh_seconds == 30.0


def test_prepare_skips_tuning_when_told_not_to(embedder):
    settings = RecsConfig(tune_on_start=False)
    assert prepare_recs(settings, RedisSettings(), encoder=embedder) is None


def fresh_list(client, redis_client, prefix: str, user: str) -> list[str]:
    """The user's list ranked now by this worker (not one another worker cached in Redis)."""
    redis_client.delete(f"{prefix}recs:{user}")
    response = client.get(f"/api/recommendations?user_id={user}&k=10")
    assert response.status_code == 200, response.json
    return [item["item_id"] for item in response.json["items"]]


def test_a_worker_started_after_items_were_added_counts_the_events_on_them(
    make_app, admin_headers, redis_url, redis_prefix, redis_client, sample_events
):
    """A new worker counted the shared log before its start-up sync added the API's items, so
    it ignored every event on them until some other event arrived: its lists differed."""
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "stats_refresh_seconds": 0}
    older = make_app(**settings).test_client()
    added = [
        {
            "item_id": f"churn-{n}",
            "title": f"Trail running shoe model {n}",
            "description": "A light trail running shoe with a grippy sole.",
            "category": "Sports",
        }
        for n in range(3)
    ]
    assert older.post("/api/items", json={"items": added}, headers=admin_headers).status_code == 201
    bought = [
        {"user_id": f"runner-{n}", "item_id": f"churn-{n % 3}", "event": "purchase"}
        for n in range(30)
    ]
    assert older.post("/api/events", json={"events": bought}).json["shared"] is True
    newer = make_app(**settings).test_client()
    users = ["newcomer", *sorted({event.user_id for event in sample_events})[:8]]
    on_older = {user: fresh_list(older, redis_client, redis_prefix, user) for user in users}
    assert "churn-0" in on_older["newcomer"], "30 purchases make the new items popular"
    assert {user: fresh_list(newer, redis_client, redis_prefix, user) for user in users} == on_older
